//! `replace` on `localDir` routes: files whose path ends with one of `pathSuffixes` are served
//! with `{{name}}` placeholders filled from environment variables (`vars`) and from the
//! credentials of bound services (`services`), with approuter's mustache semantics.
//!
//! The values (the "view") are collected once at start-up. Supported template syntax, as
//! mustache.js renders it: `{{name}}` (HTML-escaped: `& < > " ' / \` =`), `{{{name}}}` and
//! `{{& name}}` (verbatim), dotted names (`{{service.url}}`), `{{! comments}}`, sections
//! `{{#name}}…{{/name}}` (once for a truthy value, per element for a list, inside an object's
//! context) and inverted sections `{{^name}}…{{/name}}`, partials `{{> x}}` (always empty),
//! standalone tag lines removed. A missing name renders as the empty string. Unclosed tags or
//! sections and custom delimiters (`{{=<% %>=}}`) are render errors (500); mustache.js throws
//! on the first two too.
//!
//! Unlike approuter, secret credentials (`clientsecret`, passwords, keys, tokens) are never put
//! into the view: a static file is public, so they would be handed to every visitor.

use std::path::Path;

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, Method, StatusCode, header};
use serde_json::{Map, Value};

use crate::config::bindings::{Bindings, ServiceBinding};
use crate::config::environment::Environment;
use crate::config::problem::{Problems, child};
use crate::config::xs_app::ReplaceDef;
use crate::rejection::Rejection;

/// The replacement settings of one route, resolved at start-up.
#[derive(Debug, Clone)]
pub struct Replacements {
    path_suffixes: Vec<String>,
    /// A JSON object: variable and service names to their values.
    view: Value,
}

/// Why a template could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unclosed tag at byte {0}")]
    UnclosedTag(usize),
    #[error("unclosed section `{0}`")]
    UnclosedSection(String),
    #[error("unopened section `{0}` closed")]
    UnopenedSection(String),
    #[error("custom delimiters (`{{{{=`) are not supported")]
    Delimiters,
}

impl Replacements {
    /// Resolves `vars` from `env` and `services` from `bindings`; problems (a service that is
    /// not bound, bound more than once, or a name used by both) are reported at `path`.
    pub fn resolve(
        def: &ReplaceDef,
        env: &Environment,
        bindings: &Bindings,
        origin: &str,
        path: &str,
        problems: &mut Problems,
    ) -> Option<Self> {
        let before = problems.len();
        let mut view = Map::new();
        for name in &def.vars {
            view.insert(
                name.clone(),
                env.get(name)
                    .map_or(Value::Null, |v| Value::String(v.to_owned())),
            );
        }
        for (key, query) in &def.services {
            let at = child(&child(path, "services"), key);
            if view.contains_key(key) {
                problems.push(
                    origin,
                    &at,
                    format!("`{key}` is both a variable in `vars` and a service"),
                );
                continue;
            }
            match find_service(bindings, key, query) {
                Ok(binding) => {
                    view.insert(key.clone(), Value::Object(public_credentials(binding)));
                }
                Err(reason) => problems.push(origin, &at, reason),
            }
        }
        (problems.len() == before).then(|| Self {
            path_suffixes: def.path_suffixes.clone(),
            view: Value::Object(view),
        })
    }

    /// Whether the file at `path` (relative to `localDir`, as the URL names it) is rendered.
    pub fn applies_to(&self, path: &str) -> bool {
        self.path_suffixes
            .iter()
            .any(|s| path.ends_with(s.as_str()))
    }

    /// Renders `template` with this route's values.
    pub fn render(&self, template: &str) -> Result<String, TemplateError> {
        let mut out = String::with_capacity(template.len());
        let tokens = parse(template)?;
        render_tokens(&tokens, &mut vec![&self.view], &mut out);
        Ok(out)
    }
}

/// Serves `file` rendered with `replacements`: the file's content type, the route's
/// `cacheControl`, no validators (the content is not the file's). A file that is not a valid
/// template answers 500, as in approuter; the reason goes to the log only.
pub async fn serve_rendered(
    file: &Path,
    replacements: &Replacements,
    method: &Method,
    content_type: HeaderValue,
    cache_control: Option<&HeaderValue>,
) -> Response {
    let text = match tokio::fs::read(file).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(err) => {
            tracing::warn!(file = %file.display(), error = %err, "file to render could not be read");
            return Rejection::NotFound("Not Found").into_response();
        }
    };
    let rendered = match replacements.render(&text) {
        Ok(rendered) => rendered,
        Err(err) => {
            tracing::error!(file = %file.display(), error = %err, "file could not be rendered");
            let mut response = Response::new(Body::from("Internal Server Error\n"));
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            return response;
        }
    };
    let length = rendered.len();
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        Body::from(rendered)
    };
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, content_type);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    if let Some(cache_control) = cache_control {
        headers.insert(header::CACHE_CONTROL, cache_control.clone());
    }
    response
}

/// xsenv's service query: a string names the instance; an object lists properties that must all
/// match (`name`, `label`, `tag`/`tags` — contained in the instance's tags). Bound instances
/// (`VCAP_SERVICES`, then binding directories) are searched, then `default-services.json` by key.
fn find_service<'a>(
    bindings: &'a Bindings,
    key: &str,
    query: &Value,
) -> Result<&'a ServiceBinding, String> {
    let matches = |binding: &ServiceBinding| -> Result<bool, String> {
        match query {
            Value::String(name) => Ok(binding.name == *name),
            Value::Object(filter) if !filter.is_empty() => {
                for (property, wanted) in filter {
                    let Some(wanted) = wanted.as_str() else {
                        return Err(format!("query property `{property}` must be a string"));
                    };
                    let ok = match property.as_str() {
                        "name" => binding.name == wanted,
                        "label" => binding.label == wanted,
                        "tag" | "tags" => binding.tags.iter().any(|t| t == wanted),
                        other => {
                            return Err(format!(
                                "query property `{other}` is not supported (name, label, tag)"
                            ));
                        }
                    };
                    if !ok {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            _ => Err("must be a service name or a query object such as {\"tag\": \"ui5\"}".into()),
        }
    };
    for source in [&bindings.services, &bindings.directories] {
        let mut found = Vec::new();
        for binding in source {
            if matches(binding)? {
                found.push(binding);
            }
        }
        match found.as_slice() {
            [one] => return Ok(one),
            [] => {}
            many => return Err(format!("{} bound services match", many.len())),
        }
    }
    bindings
        .defaults
        .iter()
        .find(|b| b.name == key)
        .ok_or_else(|| "no bound service matches".to_owned())
}

/// The credentials without secrets (anything named like a secret, password, key or token).
fn public_credentials(binding: &ServiceBinding) -> Map<String, Value> {
    binding
        .credentials
        .iter()
        .filter(|(name, _)| !is_secret_name(name))
        .map(|(k, v)| (k.clone(), strip_secrets(v)))
        .collect()
}

fn strip_secrets(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(name, _)| !is_secret_name(name))
                .map(|(k, v)| (k.clone(), strip_secrets(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn is_secret_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    ["secret", "password", "passwd", "key", "token", "credential"]
        .iter()
        .any(|word| lower.contains(word))
}

#[derive(Debug)]
enum Token<'t> {
    Text(&'t str),
    Escaped(&'t str),
    Verbatim(&'t str),
    Section {
        name: &'t str,
        inverted: bool,
        body: Vec<Token<'t>>,
    },
}

fn parse(template: &str) -> Result<Vec<Token<'_>>, TemplateError> {
    // (open section name, inverted, tokens before it)
    let mut stack: Vec<(&str, bool, Vec<Token<'_>>)> = Vec::new();
    let mut current: Vec<Token<'_>> = Vec::new();
    let mut rest = template;
    let mut offset = 0;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            current.push(Token::Text(&rest[..open]));
        }
        let tag_start = offset + open;
        let after = &rest[open + 2..];
        let (inner, consumed) = if let Some(triple) = after.strip_prefix('{') {
            let end = triple
                .find("}}}")
                .ok_or(TemplateError::UnclosedTag(tag_start))?;
            current.push(Token::Verbatim(triple[..end].trim()));
            rest = &triple[end + 3..];
            offset = tag_start + 3 + end + 3;
            continue;
        } else {
            let end = after
                .find("}}")
                .ok_or(TemplateError::UnclosedTag(tag_start))?;
            (&after[..end], 2 + end + 2)
        };
        rest = &rest[open + consumed..];
        offset = tag_start + consumed;
        let inner = inner.trim();
        let (sigil, name) = match inner.chars().next() {
            Some(c @ ('#' | '^' | '/' | '!' | '&' | '>' | '=')) => (Some(c), inner[1..].trim()),
            _ => (None, inner),
        };
        // A section, comment or partial tag alone on its line takes the line with it.
        if matches!(sigil, Some('#' | '^' | '/' | '!' | '>')) {
            let line_start = template[..tag_start].rfind('\n').map_or(0, |i| i + 1);
            let indented = template[line_start..tag_start]
                .bytes()
                .all(|b| b == b' ' || b == b'\t');
            let line_end = rest.find('\n');
            let trailing = rest[..line_end.unwrap_or(rest.len())]
                .bytes()
                .all(|b| matches!(b, b' ' | b'\t' | b'\r'));
            if indented && trailing {
                let indent = tag_start - line_start;
                if indent > 0
                    && let Some(Token::Text(text)) = current.last_mut()
                {
                    *text = &text[..text.len() - indent];
                    if text.is_empty() {
                        current.pop();
                    }
                }
                let skip = line_end.map_or(rest.len(), |i| i + 1);
                rest = &rest[skip..];
                offset += skip;
            }
        }
        match sigil {
            None => current.push(Token::Escaped(name)),
            Some('&') => current.push(Token::Verbatim(name)),
            Some('!') | Some('>') => {}
            Some('=') => return Err(TemplateError::Delimiters),
            Some(c @ ('#' | '^')) => {
                stack.push((name, c == '^', std::mem::take(&mut current)));
            }
            Some(_) => {
                let Some((open_name, inverted, before)) = stack.pop() else {
                    return Err(TemplateError::UnopenedSection(name.to_owned()));
                };
                if open_name != name {
                    return Err(TemplateError::UnclosedSection(open_name.to_owned()));
                }
                let body = std::mem::replace(&mut current, before);
                current.push(Token::Section {
                    name,
                    inverted,
                    body,
                });
            }
        }
    }
    if let Some((name, _, _)) = stack.pop() {
        return Err(TemplateError::UnclosedSection(name.to_owned()));
    }
    if !rest.is_empty() {
        current.push(Token::Text(rest));
    }
    Ok(current)
}

/// mustache.js lookup: `.` is the current context; a dotted name starts at the innermost
/// context holding its first part.
fn lookup<'v>(stack: &[&'v Value], name: &str) -> Option<&'v Value> {
    if name == "." {
        return stack.last().copied();
    }
    let mut parts = name.split('.');
    let first = parts.next()?;
    let mut value = stack.iter().rev().find_map(|ctx| ctx.get(first))?;
    for part in parts {
        value = value.get(part)?;
    }
    Some(value)
}

fn is_falsy(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) | Some(Value::Bool(false)) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Number(n)) => n.as_f64() == Some(0.0),
        Some(Value::Array(items)) => items.is_empty(),
        Some(Value::Object(_)) => false,
        Some(Value::Bool(true)) => false,
    }
}

fn render_tokens(tokens: &[Token<'_>], stack: &mut Vec<&Value>, out: &mut String) {
    for token in tokens {
        match token {
            Token::Text(text) => out.push_str(text),
            Token::Escaped(name) => {
                if let Some(value) = lookup(stack, name) {
                    escape_into(&display(value), out);
                }
            }
            Token::Verbatim(name) => {
                if let Some(value) = lookup(stack, name) {
                    out.push_str(&display(value));
                }
            }
            Token::Section {
                name,
                inverted,
                body,
            } => {
                let value = lookup(stack, name);
                if *inverted {
                    if is_falsy(value) {
                        render_tokens(body, stack, out);
                    }
                    continue;
                }
                if is_falsy(value) {
                    continue;
                }
                match value {
                    Some(Value::Array(items)) => {
                        for item in items {
                            stack.push(item);
                            render_tokens(body, stack, out);
                            stack.pop();
                        }
                    }
                    Some(value) => {
                        stack.push(value);
                        render_tokens(body, stack, out);
                        stack.pop();
                    }
                    None => {}
                }
            }
        }
    }
}

/// JavaScript's `String(value)`.
fn display(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(items) => items
            .iter()
            .map(|v| {
                if v.is_null() {
                    String::new()
                } else {
                    display(v)
                }
            })
            .collect::<Vec<_>>()
            .join(","),
        Value::Object(_) => "[object Object]".to_owned(),
    }
}

/// mustache.js's HTML escaping.
fn escape_into(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '/' => out.push_str("&#x2F;"),
            '`' => out.push_str("&#x60;"),
            '=' => out.push_str("&#x3D;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn with_view(view: Value) -> Replacements {
        Replacements {
            path_suffixes: vec![".html".into()],
            view,
        }
    }

    #[test]
    fn variables_escape_like_mustache_js() {
        let r = with_view(
            json!({"t": "a<b>&\"c'/`=", "n": 7, "f": 1.5, "b": true, "nil": null,
            "list": ["x", null, 2], "obj": {"url": "http://u/v?a=1&b=2"}}),
        );
        assert_eq!(
            r.render("{{t}}|{{{t}}}|{{& t}}|{{ n }}|{{f}}|{{b}}|{{nil}}|{{missing}}|{{list}}|{{obj}}|{{{obj.url}}}|{{obj.url}}")
                .expect("render"),
            "a&lt;b&gt;&amp;&quot;c&#39;&#x2F;&#x60;&#x3D;|a<b>&\"c'/`=|a<b>&\"c'/`=|7|1.5|true|||x,,2|[object Object]|http://u/v?a=1&b=2|http:&#x2F;&#x2F;u&#x2F;v?a&#x3D;1&amp;b&#x3D;2"
        );
    }

    #[test]
    fn sections_comments_and_partials() {
        let r = with_view(
            json!({"on": "yes", "off": "", "svc": {"url": "U"}, "items": [{"n": 1}, {"n": 2}]}),
        );
        assert_eq!(
            r.render("{{#on}}[{{.}}]{{/on}}{{#off}}no{{/off}}{{^off}}empty{{/off}}{{#svc}}<{{url}}>{{/svc}}{{#items}}{{n}};{{/items}}{{! hidden }}{{> part}}!")
                .expect("render"),
            "[yes]empty<U>1;2;!"
        );
    }

    #[test]
    fn standalone_tags_take_their_line_as_in_mustache_js() {
        let r = with_view(json!({"a": true, "b": "x"}));
        assert_eq!(r.render("{{#a}}\n{{b}}\n{{/a}}\n").expect("render"), "x\n");
        assert_eq!(
            r.render("<ul>\n  {{#a}}\n  <li>{{b}}</li>\n  {{/a}}\r\n  {{! note }}\n</ul>")
                .expect("render"),
            "<ul>\n  <li>x</li>\n</ul>"
        );
        // Not alone on the line: whitespace stays.
        assert_eq!(r.render(" {{#a}}{{b}}{{/a}} \n").expect("render"), " x \n");
    }

    #[test]
    fn broken_templates_are_errors() {
        let r = with_view(json!({}));
        assert_eq!(r.render("a {{b"), Err(TemplateError::UnclosedTag(2)));
        assert_eq!(r.render("{{{b}}"), Err(TemplateError::UnclosedTag(0)));
        assert_eq!(
            r.render("{{#s}}x"),
            Err(TemplateError::UnclosedSection("s".into()))
        );
        assert_eq!(
            r.render("x{{/s}}"),
            Err(TemplateError::UnopenedSection("s".into()))
        );
        assert_eq!(
            r.render("{{#a}}{{/b}}"),
            Err(TemplateError::UnclosedSection("a".into()))
        );
        assert_eq!(r.render("{{=<% %>=}}"), Err(TemplateError::Delimiters));
        assert_eq!(r.render("no tags } {").expect("plain"), "no tags } {");
    }

    #[test]
    fn secrets_never_enter_the_view() {
        let binding = ServiceBinding {
            origin: "env VCAP_SERVICES".into(),
            path: "$.x[0]".into(),
            name: "ui5".into(),
            label: "x".into(),
            tags: vec!["ui5".into()],
            credentials: json!({"url": "http://u", "clientsecret": "s", "password": "p",
                "nested": {"apiKey": "k", "host": "h"}, "access_token": "t"})
            .as_object()
            .cloned()
            .unwrap_or_default(),
        };
        assert_eq!(
            Value::Object(public_credentials(&binding)),
            json!({"url": "http://u", "nested": {"host": "h"}})
        );
    }
}
