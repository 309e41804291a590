//! `xs-app.json` and the `destinations` variable: any text is parsed into a configuration or a
//! list of problems, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xsrouter::config::Problems;
use xsrouter::config::{destinations, xs_app};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut problems = Problems::default();
    let _ = xs_app::parse(&text, "xs-app.json", &mut problems);
    let _ = destinations::parse(&text, "env destinations", &mut problems);
    // The same text as a route source, wrapped in an otherwise valid document.
    let doc = serde_json::json!({
        "routes": [{"source": text, "target": text, "destination": "d"}],
        "welcomeFile": text,
    });
    let _ = xs_app::parse(&doc.to_string(), "xs-app.json", &mut problems);
    let dest = serde_json::json!([{"name": text, "url": text, "timeout": text}]);
    let _ = destinations::parse(&dest.to_string(), "env destinations", &mut problems);
});
