//! Configuration errors through the real binary: `xsrouter check -w DIR` with a cleared
//! environment must exit non-zero and name, for every problem, the file or variable, the JSON
//! path and the reason; a valid configuration prints its summary and exits 0.

mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::WorkDir;

const BIN: &str = env!("CARGO_BIN_EXE_xsrouter");

/// Runs `xsrouter check -w dir` with exactly the given environment.
fn check(dir: &Path, env: &[(&str, &str)]) -> Output {
    Command::new(BIN)
        .arg("check")
        .arg("-w")
        .arg(dir)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run xsrouter check")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The problem lines of a failed run (`  origin: path: reason`), without the header line.
fn problem_lines(output: &Output) -> Vec<String> {
    stderr(output)
        .lines()
        .filter(|l| l.starts_with("  "))
        .map(|l| l.trim().to_owned())
        .collect()
}

/// Asserts a failed check whose only problem starts with `origin: path: reason-prefix`.
fn assert_single_problem(output: &Output, origin: &str, path: &str, reason: &str) {
    assert_failed(output);
    let lines = problem_lines(output);
    assert_eq!(lines.len(), 1, "{}", stderr(output));
    assert!(
        stderr(output).starts_with("xsrouter: 1 configuration problem:\n"),
        "{}",
        stderr(output)
    );
    assert_has_problem(output, origin, path, reason);
}

fn assert_has_problem(output: &Output, origin: &str, path: &str, reason: &str) {
    let want = format!("{origin}: {path}: {reason}");
    assert!(
        problem_lines(output).iter().any(|l| l.starts_with(&want)),
        "missing {want:?} in:\n{}",
        stderr(output)
    );
}

fn assert_failed(output: &Output) {
    assert_eq!(
        output.status.code(),
        Some(1),
        "stdout:\n{}\nstderr:\n{}",
        stdout(output),
        stderr(output)
    );
    assert!(
        !stdout(output).contains("configuration OK"),
        "{}",
        stdout(output)
    );
}

fn assert_ok(output: &Output) {
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        stdout(output),
        stderr(output)
    );
}

/// A working directory with a `web/` directory for localDir routes.
fn app(xs_app: &Value) -> WorkDir {
    let dir = WorkDir::new(xs_app);
    dir.file("web/index.html", "<h1>hi</h1>");
    dir
}

/// How problems name xs-app.json: the path as given on the command line.
fn xs_app_origin(dir: &WorkDir) -> String {
    dir.path().join("xs-app.json").display().to_string()
}

#[test]
fn missing_xs_app_json_is_one_line_naming_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = check(dir.path(), &[]);
    assert_failed(&output);
    let err = stderr(&output);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].starts_with("xsrouter: ")
            && lines[0].contains(&dir.path().join("xs-app.json").display().to_string())
            && lines[0].contains("not found"),
        "{err}"
    );
    assert_eq!(stdout(&output), "");
}

#[test]
fn invalid_json_names_the_file_and_position() {
    let dir = WorkDir::with_text("{\"routes\": [\n  {\"source\": \"^/a\",}\n]}");
    let output = check(dir.path(), &[]);
    assert_single_problem(&output, &xs_app_origin(&dir), "$", "invalid JSON: ");
    assert!(stderr(&output).contains("line 2"), "{}", stderr(&output));
}

#[test]
fn xs_app_json_must_be_an_object() {
    let dir = WorkDir::with_text("[1, 2]");
    let output = check(dir.path(), &[]);
    assert_single_problem(&output, &xs_app_origin(&dir), "$", "must be a JSON object");
}

#[test]
fn unknown_top_level_property() {
    let dir = app(&json!({"authenticationMethod": "none", "welcomeFiles": "index.html"}));
    let output = check(dir.path(), &[]);
    assert_single_problem(
        &output,
        &xs_app_origin(&dir),
        "$.welcomeFiles",
        "unknown property",
    );
}

#[test]
fn unknown_route_property() {
    let dir = app(&json!({"routes": [
        {"source": "^/(.*)$", "localDir": "web", "authenticationType": "none"},
        {"source": "^/(.*)$", "localDir": "web", "colour": "red"}
    ]}));
    let output = check(dir.path(), &[]);
    assert_single_problem(
        &output,
        &xs_app_origin(&dir),
        "$.routes[1].colour",
        "unknown field `colour`",
    );
}

#[test]
fn source_of_the_wrong_type() {
    let dir = app(&json!({"routes": [{"source": 5, "localDir": "web"}]}));
    let output = check(dir.path(), &[]);
    assert_single_problem(
        &output,
        &xs_app_origin(&dir),
        "$.routes[0].source",
        "must be a regular expression string",
    );
    let dir =
        app(&json!({"routes": [{"source": {"path": "^/", "matchCase": "no"}, "localDir": "web"}]}));
    let output = check(dir.path(), &[]);
    assert_single_problem(
        &output,
        &xs_app_origin(&dir),
        "$.routes[0].source.matchCase",
        "must be a boolean",
    );
}

#[test]
fn route_with_both_destination_and_local_dir() {
    let dir = app(
        &json!({"routes": [{"source": "^/(.*)$", "localDir": "web", "destination": "backend"}]}),
    );
    let output = check(
        dir.path(),
        &[(
            "destinations",
            r#"[{"name": "backend", "url": "http://127.0.0.1:9"}]"#,
        )],
    );
    assert_single_problem(
        &output,
        &xs_app_origin(&dir),
        "$.routes[0]",
        "a route needs exactly one of `destination`, `localDir` and `service`",
    );
}

#[test]
fn unknown_destination() {
    let dir = app(&json!({"routes": [{"source": "^/api/(.*)$", "destination": "nowhere"}]}));
    let output = check(
        dir.path(),
        &[(
            "destinations",
            r#"[{"name": "backend", "url": "http://127.0.0.1:9"}]"#,
        )],
    );
    assert_single_problem(
        &output,
        &xs_app_origin(&dir),
        "$.routes[0].destination",
        "unknown destination `nowhere`",
    );
    // Without the variable at all, the reason says where destinations come from.
    let output = check(dir.path(), &[]);
    assert_single_problem(
        &output,
        &xs_app_origin(&dir),
        "$.routes[0].destination",
        "unknown destination `nowhere`: it is not in the `destinations` environment variable",
    );
}

#[test]
fn local_dir_that_does_not_exist() {
    let dir = app(&json!({"routes": [
        {"source": "^/a/(.*)$", "localDir": "web"},
        {"source": "^/b/(.*)$", "localDir": "missing"},
        {"source": "^/c/(.*)$", "localDir": "web/index.html"}
    ]}));
    let output = check(dir.path(), &[]);
    assert_failed(&output);
    assert_eq!(problem_lines(&output).len(), 2, "{}", stderr(&output));
    assert_has_problem(
        &output,
        &xs_app_origin(&dir),
        "$.routes[1].localDir",
        "`missing` is not a directory",
    );
    assert_has_problem(
        &output,
        &xs_app_origin(&dir),
        "$.routes[2].localDir",
        "`web/index.html` is not a directory",
    );
}

#[test]
fn bad_regular_expression_in_source() {
    let dir = app(&json!({"routes": [
        {"source": "^/ok/(.*)$", "localDir": "web"},
        {"source": "^/(unclosed", "localDir": "web"}
    ]}));
    let output = check(dir.path(), &[]);
    assert_single_problem(
        &output,
        &xs_app_origin(&dir),
        "$.routes[1].source",
        "invalid regular expression",
    );
}

/// Routes that fail to parse must not shift the index of later routes' problems.
#[test]
fn problems_name_the_route_index_in_the_file() {
    let dir = app(&json!({"routes": [
        {"source": 5, "localDir": "web"},
        {"source": "^/(unclosed", "localDir": "web"},
        {"source": "^/b/(.*)$", "localDir": "missing"}
    ]}));
    let output = check(dir.path(), &[]);
    assert_failed(&output);
    let origin = xs_app_origin(&dir);
    assert_has_problem(&output, &origin, "$.routes[0].source", "must be a regular");
    assert_has_problem(
        &output,
        &origin,
        "$.routes[1].source",
        "invalid regular expression",
    );
    assert_has_problem(
        &output,
        &origin,
        "$.routes[2].localDir",
        "`missing` is not a directory",
    );
    assert_eq!(problem_lines(&output).len(), 3, "{}", stderr(&output));
}

fn destinations_problem(destinations: &str, path: &str, reason: &str) {
    let dir = app(
        &json!({"authenticationMethod": "none", "routes": [{"source": "^/(.*)$", "localDir": "web"}]}),
    );
    let output = check(dir.path(), &[("destinations", destinations)]);
    assert_single_problem(&output, "env destinations", path, reason);
}

#[test]
fn destinations_with_duplicate_names() {
    destinations_problem(
        r#"[{"name": "a", "url": "http://127.0.0.1:9"}, {"name": "b", "url": "http://127.0.0.1:9"}, {"name": "a", "url": "http://127.0.0.1:10"}]"#,
        "$[2].name",
        "duplicate destination name `a`",
    );
}

#[test]
fn destination_with_a_bad_url() {
    destinations_problem(
        r#"[{"name": "a", "url": "not a url"}]"#,
        "$[0].url",
        "not a valid URL",
    );
    destinations_problem(
        r#"[{"name": "a", "url": "ftp://files.example/x"}]"#,
        "$[0].url",
        "must be an absolute http, https, ws or wss URL with a host",
    );
}

#[test]
fn destination_with_an_unknown_property() {
    destinations_problem(
        r#"[{"name": "a", "url": "http://127.0.0.1:9", "colour": "red"}]"#,
        "$[0].colour",
        "unknown field `colour`",
    );
}

#[test]
fn destination_timeout_that_is_not_a_number() {
    destinations_problem(
        r#"[{"name": "a", "url": "http://127.0.0.1:9", "timeout": "abc"}]"#,
        "$[0].timeout",
        "expected a non-negative integer, found \"abc\"",
    );
}

#[test]
fn on_premise_destinations_are_refused() {
    destinations_problem(
        r#"[{"name": "a", "url": "http://127.0.0.1:9", "proxyType": "OnPremise"}]"#,
        "$[0].proxyType",
        "`OnPremise` destinations need the Connectivity service",
    );
}

#[test]
fn destinations_must_be_a_json_array() {
    destinations_problem(
        r#"{"name": "a", "url": "http://127.0.0.1:9"}"#,
        "$",
        "must be a JSON array of destinations",
    );
    destinations_problem(r#"[{"name": "a""#, "$", "invalid JSON: ");
}

#[test]
fn invalid_http_headers() {
    let dir = app(
        &json!({"authenticationMethod": "none", "routes": [{"source": "^/(.*)$", "localDir": "web"}]}),
    );
    for (value, path, reason) in [
        ("not json", "$", "invalid JSON: "),
        (r#"{"X-A": "b"}"#, "$", "must be a JSON array"),
        (
            r#"[{"X-Ok": "fine"}, {"Set-Cookie": "a=b"}]"#,
            "$[1].Set-Cookie",
            "this header may not be set for every response",
        ),
        (
            r#"[{"X-A": 1}]"#,
            "$[0].X-A",
            "the header value must be a string",
        ),
        (
            r#"[{"Bad Name": "x"}]"#,
            "$[0].Bad Name",
            "not a valid HTTP header name",
        ),
        (r#"["X-A: b"]"#, "$[0]", "must be an object"),
    ] {
        let output = check(dir.path(), &[("httpHeaders", value)]);
        assert_single_problem(&output, "env httpHeaders", path, reason);
    }
}

#[test]
fn invalid_setting_names_the_variable() {
    let dir = app(&json!({"authenticationMethod": "none"}));
    let output = check(dir.path(), &[("PORT", "abc")]);
    assert_failed(&output);
    let err = stderr(&output);
    assert_eq!(problem_lines(&output).len(), 1, "{err}");
    assert!(
        err.to_ascii_lowercase().contains("port") && err.contains("\"abc\""),
        "{err}"
    );
}

#[test]
fn every_invalid_setting_is_reported_under_its_variable() {
    let dir = app(&json!({"authenticationMethod": "none"}));
    let output = check(
        dir.path(),
        &[
            ("PORT", "abc"),
            ("SEND_XFRAMEOPTIONS", "maybe"),
            ("XSROUTER_SHUTDOWN_TIMEOUT", "soon"),
        ],
    );
    assert_failed(&output);
    assert_eq!(problem_lines(&output).len(), 3, "{}", stderr(&output));
    for variable in ["PORT", "SEND_XFRAMEOPTIONS", "XSROUTER_SHUTDOWN_TIMEOUT"] {
        assert!(
            problem_lines(&output)
                .iter()
                .any(|l| l.starts_with(&format!("env {variable}: $: "))),
            "{variable} not named in:\n{}",
            stderr(&output)
        );
    }
}

#[test]
fn every_problem_is_reported_in_one_run() {
    let dir = app(&json!({
        "authenticationMethod": "none",
        "welcomeFiles": "index.html",
        "routes": [
            {"source": "^/(unclosed", "localDir": "web"},
            {"source": "^/a/(.*)$", "destination": "nowhere"},
            {"source": "^/b/(.*)$", "localDir": "missing"},
            {"source": "^/c/(.*)$", "localDir": "web", "colour": "red"},
            {"source": true, "localDir": "web"}
        ]
    }));
    let output = check(
        dir.path(),
        &[
            (
                "destinations",
                r#"[{"name": "a", "url": "nope"}, {"name": "b", "url": "http://127.0.0.1:9", "timeout": "abc"}]"#,
            ),
            ("httpHeaders", r#"[{"Cookie": "x"}]"#),
        ],
    );
    assert_failed(&output);
    let origin = xs_app_origin(&dir);
    let expected = [
        (origin.as_str(), "$.welcomeFiles", "unknown property"),
        (
            origin.as_str(),
            "$.routes[0].source",
            "invalid regular expression",
        ),
        (
            origin.as_str(),
            "$.routes[1].destination",
            "unknown destination `nowhere`",
        ),
        (
            origin.as_str(),
            "$.routes[2].localDir",
            "`missing` is not a directory",
        ),
        (
            origin.as_str(),
            "$.routes[3].colour",
            "unknown field `colour`",
        ),
        (
            origin.as_str(),
            "$.routes[4].source",
            "must be a regular expression string",
        ),
        ("env destinations", "$[0].url", "not a valid URL"),
        (
            "env destinations",
            "$[1].timeout",
            "expected a non-negative integer",
        ),
        (
            "env httpHeaders",
            "$[0].Cookie",
            "this header may not be set for every response",
        ),
    ];
    for (origin, path, reason) in expected {
        assert_has_problem(&output, origin, path, reason);
    }
    assert_eq!(
        problem_lines(&output).len(),
        expected.len(),
        "{}",
        stderr(&output)
    );
    assert!(
        stderr(&output).starts_with(&format!(
            "xsrouter: {} configuration problems:\n",
            expected.len()
        )),
        "{}",
        stderr(&output)
    );
}

#[test]
fn problems_never_echo_secret_values() {
    let dir = app(&json!({"authenticationMethod": "none"}));
    let output = check(
        dir.path(),
        &[(
            "destinations",
            r#"[{"name": "a", "url": "http://user:hunter2-secret@127.0.0.1:9"}]"#,
        )],
    );
    assert_single_problem(
        &output,
        "env destinations",
        "$[0].url",
        "must not carry user information",
    );
    assert!(
        !stderr(&output).contains("hunter2-secret"),
        "{}",
        stderr(&output)
    );
}

fn valid_app() -> WorkDir {
    app(&json!({
        "authenticationMethod": "none",
        "welcomeFile": "index.html",
        "routes": [
            {"source": "^/api/(.*)$", "target": "/$1", "destination": "backend"},
            {"source": "^/(.*)$", "localDir": "web", "cacheControl": "no-cache"}
        ]
    }))
}

#[test]
fn valid_configuration_prints_a_summary() {
    let dir = valid_app();
    let output = check(
        dir.path(),
        &[(
            "destinations",
            r#"[{"name": "backend", "url": "http://127.0.0.1:9/base", "timeout": 1500, "forwardAuthToken": true},
                {"name": "spare", "url": "https://spare.example"}]"#,
        )],
    );
    assert_ok(&output);
    assert_eq!(stderr(&output), "");
    let out = stdout(&output);
    let canonical = dir.path().canonicalize().expect("canonical workdir");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        format!("configuration OK: {}", canonical.display()),
        "{out}"
    );
    assert_eq!(lines[1], "routes (2):", "{out}");
    assert!(
        lines[2].starts_with("  #0 ^/api/(.*)$ -> destination")
            && lines[2].contains("backend")
            && lines[2].ends_with("(authentication: none)"),
        "{out}"
    );
    assert_eq!(
        lines[3],
        format!(
            "  #1 ^/(.*)$ -> localDir {} (authentication: none)",
            canonical.join("web").display()
        ),
        "{out}"
    );
    assert_eq!(lines[4], "destinations (2):", "{out}");
    assert_eq!(
        lines[5], "  backend -> http://127.0.0.1:9/base (timeout 1500 ms, forwardAuthToken)",
        "{out}"
    );
    assert_eq!(
        lines[6], "  spare -> https://spare.example/ (timeout 30000 ms)",
        "{out}"
    );
    assert_eq!(lines.len(), 7, "{out}");
}

#[test]
fn summary_lists_the_implicit_resources_route() {
    let dir = WorkDir::new(&json!({"authenticationMethod": "none"}));
    dir.file("resources/index.html", "hi");
    let output = check(dir.path(), &[]);
    assert_ok(&output);
    let out = stdout(&output);
    assert!(
        out.contains("routes (1):\n  implicit ^/(.*)$ -> localDir "),
        "{out}"
    );
    assert!(out.contains("destinations (0):"), "{out}");
}

#[test]
fn default_env_json_supplies_destinations() {
    let dir = valid_app();
    dir.file(
        "default-env.json",
        json!({"destinations": [{"name": "backend", "url": "http://127.0.0.1:9/from-file"}]})
            .to_string(),
    );
    let output = check(dir.path(), &[]);
    assert_ok(&output);
    assert!(
        stdout(&output).contains("  backend -> http://127.0.0.1:9/from-file (timeout 30000 ms)"),
        "{}",
        stdout(&output)
    );
    // As a JSON string it works the same.
    dir.file(
        "default-env.json",
        json!({"destinations": r#"[{"name": "backend", "url": "http://127.0.0.1:9/as-string"}]"#})
            .to_string(),
    );
    let output = check(dir.path(), &[]);
    assert_ok(&output);
    assert!(
        stdout(&output).contains("  backend -> http://127.0.0.1:9/as-string "),
        "{}",
        stdout(&output)
    );
}

#[test]
fn problems_in_default_env_json_name_the_file() {
    let dir = valid_app();
    dir.file(
        "default-env.json",
        json!({"destinations": [{"name": "backend", "url": "no url"}]}).to_string(),
    );
    let output = check(dir.path(), &[]);
    assert_failed(&output);
    let file = dir
        .path()
        .canonicalize()
        .expect("canonical")
        .join("default-env.json");
    assert_has_problem(
        &output,
        &format!("{} (destinations)", file.display()),
        "$[0].url",
        "not a valid URL",
    );
    // The route's destination was refused with it.
    assert_has_problem(
        &output,
        &xs_app_origin(&dir),
        "$.routes[0].destination",
        "unknown destination `backend`",
    );
    assert_eq!(problem_lines(&output).len(), 2, "{}", stderr(&output));
    dir.file("default-env.json", "{\"destinations\": ");
    let output = check(dir.path(), &[]);
    assert_failed(&output);
    let origin = dir.path().join("default-env.json").display().to_string();
    assert_has_problem(&output, &origin, "$", "invalid JSON: ");
}

/// A value that came from default-env.json is not in the process environment: its problems
/// should say so, or users look for a variable that is not set.
#[test]
fn problems_in_default_env_values_name_default_env_json() {
    let dir = valid_app();
    dir.file(
        "default-env.json",
        json!({"destinations": [{"name": "backend", "url": "no url"}]}).to_string(),
    );
    let output = check(dir.path(), &[]);
    assert_failed(&output);
    let line = problem_lines(&output)
        .into_iter()
        .find(|l| l.contains("$[0].url: not a valid URL"))
        .expect("the URL problem");
    assert!(line.contains("default-env.json"), "{line}");
}

#[test]
fn process_environment_wins_over_default_env_json() {
    let dir = valid_app();
    // The file's value is even invalid: it must not be looked at.
    dir.file(
        "default-env.json",
        json!({
            "destinations": [{"name": "backend", "url": "not a url"}],
            "httpHeaders": [{"X-From": "file"}]
        })
        .to_string(),
    );
    let output = check(
        dir.path(),
        &[(
            "destinations",
            r#"[{"name": "backend", "url": "http://127.0.0.1:9/from-env"}]"#,
        )],
    );
    assert_ok(&output);
    let out = stdout(&output);
    assert!(
        out.contains("  backend -> http://127.0.0.1:9/from-env "),
        "{out}"
    );
    assert!(!out.contains("not a url"), "{out}");
}

#[test]
fn run_with_a_bad_configuration_exits_without_listening() {
    let dir = app(&json!({"routes": [{"source": "^/api/(.*)$", "destination": "nowhere"}]}));
    let started = Instant::now();
    let mut child = Command::new(BIN)
        .arg("-w")
        .arg(dir.path())
        .env_clear()
        .env("PORT", "0")
        .env("XS_BIND_ADDRESS", "127.0.0.1")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start xsrouter");
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for xsrouter") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("xsrouter kept running with a bad configuration");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = child.wait_with_output().expect("output");
    assert_eq!(status.code(), Some(1), "{}", stderr(&output));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let err = stderr(&output);
    assert!(!err.contains("xsrouter listening"), "{err}");
    assert!(
        err.contains(&format!(
            "{}: $.routes[0].destination: unknown destination `nowhere`",
            xs_app_origin(&dir)
        )),
        "{err}"
    );
    assert_eq!(stdout(&output), "");

    // A missing descriptor fails the same way.
    let empty = tempfile::tempdir().expect("temp dir");
    let output = Command::new(BIN)
        .arg("-w")
        .arg(empty.path())
        .env_clear()
        .env("PORT", "0")
        .env("XS_BIND_ADDRESS", "127.0.0.1")
        .stdin(Stdio::null())
        .output()
        .expect("run xsrouter");
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(!err.contains("xsrouter listening"), "{err}");
    assert!(err.contains("xs-app.json not found"), "{err}");
}

#[test]
fn help_lists_every_variable_the_router_reads() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_xsrouter"))
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    let others = [
        "destinations",
        "httpHeaders",
        "VCAP_SERVICES",
        "VCAP_SERVICES_FILE_PATH",
        "SERVICE_BINDING_ROOT",
        "UAA_SERVICE_NAME",
        "IAS_SERVICE_NAME",
        "XSUAA_PRIVATE_KEY",
        "IAS_PRIVATE_KEY",
        "FULL_CERTIFICATE_CHAIN",
        "XS_CACERT_PATH",
        "VCAP_APPLICATION",
        "COOKIES",
        "EXT_SESSION_MGT",
        "REDIS_URL",
        "XSROUTER_SESSION_SECRET",
        "XSROUTER_TLS_CERT",
        "XSROUTER_TLS_KEY",
        "XSROUTER_CLIENT_CERT_MODE",
        "XSROUTER_CLIENT_CA",
        "XSROUTER_CLIENT_CERT_HEADERS",
        "LOG_FORMAT",
        "LOG_LEVEL",
        "RUST_LOG",
    ];
    for name in xsrouter::config::settings::KEYS.iter().chain(others.iter()) {
        assert!(help.contains(name), "--help does not mention {name}");
    }
}
