//! A browser for login tests: sends requests without following redirects, keeps cookies by name,
//! and can run the whole login (router → identity provider → callback → back).

use std::collections::HashMap;

use serde_json::Value;

use super::{RouterUrl, client};

/// A browser: follows nothing by itself, keeps cookies per name.
#[derive(Default)]
pub struct Browser {
    pub cookies: HashMap<String, String>,
}

impl Browser {
    pub fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub async fn get(&mut self, url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        self.send(client().get(url), headers).await
    }

    pub async fn send(
        &mut self,
        mut builder: reqwest::RequestBuilder,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        if !self.cookies.is_empty() {
            builder = builder.header("cookie", self.cookie_header());
        }
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let response = builder.send().await.expect("send");
        for value in response.headers().get_all("set-cookie") {
            let text = value.to_str().expect("cookie");
            let (pair, attributes) = text.split_once(';').unwrap_or((text, ""));
            let (name, value) = pair.split_once('=').expect("name=value");
            if value.is_empty() || attributes.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        response
    }

    /// The session cookie's value.
    pub fn session_id(&self) -> String {
        self.cookies
            .get("JSESSIONID")
            .cloned()
            .expect("a session cookie")
    }

    /// Runs the whole login for `path`; returns the final response after returning to it.
    pub async fn login(&mut self, router: &impl RouterUrl, path: &str) -> reqwest::Response {
        let start = self.get(&router.url(path), &[]).await;
        assert_eq!(start.status(), 302, "login starts with a redirect");
        let authorize = location(&start);
        let idp = self.get(&authorize, &[]).await;
        assert_eq!(idp.status(), 302, "the identity provider redirects back");
        let callback = location(&idp);
        assert!(
            callback.starts_with(&router.url("/login/callback?")),
            "{callback}"
        );
        let back = self.get(&callback, &[]).await;
        assert_eq!(back.status(), 302, "{:?}", back.text().await);
        assert_eq!(location(&back), path);
        assert!(
            self.cookies.contains_key("JSESSIONID"),
            "a session cookie was set"
        );
        self.get(&router.url(path), &[]).await
    }
}

pub fn location(response: &reqwest::Response) -> String {
    response.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned()
}

pub async fn echo(response: reqwest::Response) -> Value {
    let status = response.status();
    let body = response.bytes().await.expect("body");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).expect("json")
}

pub fn bearer(echo: &Value) -> String {
    echo["headers"]["authorization"][0]
        .as_str()
        .expect("authorization")
        .trim_start_matches("Bearer ")
        .to_owned()
}
