//! HTTP client errors as they are written to logs: the error and its causes on one line, without
//! the request URL (a query string or path may carry tokens or other secrets).

/// `err` and its causes, joined by `: `, with reqwest's ` for url (...)` removed.
pub fn without_url(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    if let Some(url) = err.url() {
        text = text.replace(&format!(" for url ({url})"), "");
        // Never leave the URL in, whatever reqwest's wording.
        text = text.replace(url.as_str(), "<url>");
    }
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_url_and_its_query_are_left_out() {
        crate::install_crypto_provider();
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        // Port 1 on loopback: refused at once.
        let err = client
            .get("http://127.0.0.1:1/path?token=SECRET-IN-QUERY")
            .send()
            .await
            .expect_err("refused");
        assert!(
            err.to_string().contains("SECRET-IN-QUERY"),
            "reqwest shows it"
        );
        let text = without_url(&err);
        assert!(!text.contains("SECRET-IN-QUERY"), "{text}");
        assert!(text.contains("error sending request"), "{text}");
    }
}
