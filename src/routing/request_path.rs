//! Checks on the request path before any route sees it: no `.`/`..` segments, no NUL, no
//! backslash segments, however many times the path is percent-encoded. Such requests get 400.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

/// How many rounds of percent-decoding a path may need before it is stable (approuter: 5).
const MAX_DECODE_ROUNDS: usize = 5;

/// Why a request path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathRejection {
    #[error("path contains a dot segment")]
    DotSegment,
    #[error("path contains a forbidden character")]
    ForbiddenCharacter,
    #[error("path is encoded too many times")]
    TooManyEncodings,
    #[error("path is not valid UTF-8")]
    NotUtf8,
}

/// Validates the path component (without query) of a request.
pub fn check(path: &str) -> Result<(), PathRejection> {
    let mut current: Cow<'_, str> = Cow::Borrowed(path);
    for _ in 0..=MAX_DECODE_ROUNDS {
        check_segments(&current)?;
        let decoded = percent_decode_str(&current)
            .decode_utf8()
            .map_err(|_| PathRejection::NotUtf8)?;
        if decoded == current {
            return Ok(());
        }
        current = Cow::Owned(decoded.into_owned());
    }
    Err(PathRejection::TooManyEncodings)
}

fn check_segments(path: &str) -> Result<(), PathRejection> {
    if path.bytes().any(|b| b == 0 || b == b'\r' || b == b'\n') {
        return Err(PathRejection::ForbiddenCharacter);
    }
    for segment in path.split(['/', '\\']) {
        // `..;x` is `..` with a path parameter to servlet containers (Tomcat, Jetty): a public
        // route's backend would resolve it to another path.
        let segment = segment.split(';').next().unwrap_or(segment);
        if segment == "." || segment == ".." {
            return Err(PathRejection::DotSegment);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_paths() {
        for ok in [
            "/",
            "/a/b.c",
            "//a",
            "/a..b/c",
            "/%E2%82%AC",
            "/a%20b",
            "/.well-known/x",
            "/a/.hidden",
            "/a;b/c",
            "/a/x;jsessionid=1",
            "/a/...;/b",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn refuses_traversal_in_any_encoding() {
        for bad in [
            "/../x",
            "/a/../b",
            "/a/./b",
            "/%2e%2e/x",
            "/a/%2E%2e/b",
            "/%252e%252e/x",
            "/a/..;/b",
            "/a/..;x=1/b",
            "/a/.;/b",
            "/a/%2e%2e;/b",
            "/a/..%3b/b",
            "/a/%2e%2e%3bjsessionid=1/b",
            "/..%2fetc",
            "/%2f..%2fetc/passwd",
            "/..%5c..%5cetc",
            "/a\\..\\b",
            "/a/..",
            "/%25252e%25252e/",
        ] {
            assert_eq!(check(bad), Err(PathRejection::DotSegment), "{bad}");
        }
        assert_eq!(check("/a%00b"), Err(PathRejection::ForbiddenCharacter));
        assert_eq!(
            check("/a%0d%0aSet-Cookie:x"),
            Err(PathRejection::ForbiddenCharacter)
        );
        assert_eq!(check("/%ff"), Err(PathRejection::NotUtf8));
        let mut deep = ".".to_owned();
        for _ in 0..7 {
            deep = deep.replace('%', "%25").replace('.', "%2e");
        }
        let deep = format!("/{deep}/x");
        assert_eq!(check(&deep), Err(PathRejection::TooManyEncodings));
    }
}
