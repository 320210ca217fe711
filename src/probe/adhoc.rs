//! A probe described by a type, a target and options, as `tocsin probe` and
//! `GET /probe?module=&target=` take it: the target goes into the key that names what the
//! probe reaches (`url`, `address`, `server`, `host` or `uri`), then the usual validation.

use serde_json::{Map, Value};

use super::{ProbeConfig, ProbeSpec};
use crate::validation::Issues;

/// The option a target fills for each probe type.
pub fn target_key(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "http" => "url",
        "tcp" | "tls" | "imap" | "smtp" | "diameter" | "gtp" | "radius" => "address",
        "dns" => "server",
        "icmp" => "host",
        "sip" => "uri",
        _ => return None,
    })
}

/// Completes a bare target the way blackbox_exporter users write them: `example.net` is
/// `http://example.net` for http, `host:port` is `sip:host:port` for sip.
fn complete(kind: &str, target: &str) -> String {
    match kind {
        "http" if !target.contains("://") => format!("http://{target}"),
        "sip" if !target.starts_with("sip:") && !target.starts_with("sips:") => {
            format!("sip:{target}")
        }
        _ => target.to_string(),
    }
}

/// Builds a runnable probe from `options` (a `probe = { … }` table without its target),
/// its `type`, and `target`. Every problem comes back as `path.key: message` lines.
pub fn build(
    path: &str,
    mut options: Map<String, Value>,
    target: &str,
) -> Result<ProbeSpec, String> {
    let kind = options
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{path}.type: missing"))?
        .to_string();
    let key =
        target_key(&kind).ok_or_else(|| format!("{path}.type: unknown probe type `{kind}`"))?;
    options.insert(key.to_string(), Value::String(complete(&kind, target)));
    let config: ProbeConfig =
        serde_json::from_value(Value::Object(options)).map_err(|e| format!("{path}: {e}"))?;
    let mut issues = Issues::default();
    config
        .build(path, &mut issues)
        .ok_or_else(|| issues.to_string())
}

/// `key=value` command-line options: values that read as JSON (numbers, booleans, arrays,
/// quoted strings) keep their type; anything else is a string in which the escapes of a
/// TOML string apply (`\r`, `\n`, `\t`, `\\`, `\"`, `\uXXXX`), so `send=PING\r\n`
/// sends a line. An unknown escape (`\d` in a regex) stays as written.
pub fn parse_options(pairs: &[String]) -> Result<Map<String, Value>, String> {
    let mut map = Map::new();
    for pair in pairs {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("--option {pair}: expected key=value"))?;
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(unescape(value)));
        map.insert(key.to_string(), value);
    }
    Ok(map)
}

fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let replaced = match chars.peek() {
            Some('n') => Some('\n'),
            Some('r') => Some('\r'),
            Some('t') => Some('\t'),
            Some('b') => Some('\u{8}'),
            Some('f') => Some('\u{c}'),
            Some('"') => Some('"'),
            Some('\\') => Some('\\'),
            Some('u') => {
                let hex: String = chars.clone().skip(1).take(4).collect();
                let code = (hex.len() == 4)
                    .then(|| u32::from_str_radix(&hex, 16).ok())
                    .flatten()
                    .and_then(char::from_u32);
                if code.is_some() {
                    for _ in 0..4 {
                        chars.next();
                    }
                }
                code
            }
            _ => None,
        };
        match replaced {
            Some(r) => {
                chars.next();
                out.push(r);
            }
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_fill_the_right_key() {
        let http = Map::from_iter([("type".to_string(), Value::from("http"))]);
        let spec = build("probe", http, "127.0.0.1:8080/health").unwrap();
        assert_eq!(spec.kind(), "http");
        let sip = Map::from_iter([("type".to_string(), Value::from("sip"))]);
        assert_eq!(build("probe", sip, "127.0.0.1:5060").unwrap().kind(), "sip");
        let unknown = Map::from_iter([("type".to_string(), Value::from("gopher"))]);
        assert_eq!(
            build("modules.x.probe", unknown, "h").unwrap_err(),
            "modules.x.probe.type: unknown probe type `gopher`"
        );
        let bad = Map::from_iter([("type".to_string(), Value::from("tcp"))]);
        assert_eq!(
            build("probe", bad, "no-port").unwrap_err(),
            "probe.address: `no-port` is not host:port"
        );
    }

    #[test]
    fn options_keep_json_types() {
        let map = parse_options(&[
            "valid_status=[200,204]".into(),
            "follow_redirects=false".into(),
            "body_contains=ready".into(),
        ])
        .unwrap();
        assert_eq!(map["valid_status"], serde_json::json!([200, 204]));
        assert_eq!(map["follow_redirects"], Value::Bool(false));
        assert_eq!(map["body_contains"], Value::from("ready"));
        assert!(parse_options(&["novalue".into()]).is_err());
    }

    #[test]
    fn string_options_take_toml_escapes_and_keep_unknown_ones() {
        let map = parse_options(&[
            r"send=PING\r\n".into(),
            r"expect_regex=^\d+ ok\\".into(),
            r"name=caf\u00e9 \u12".into(),
            r#"quoted="a\tb""#.into(),
        ])
        .unwrap();
        assert_eq!(map["send"], Value::from("PING\r\n"));
        assert_eq!(map["expect_regex"], Value::from(r"^\d+ ok\"));
        assert_eq!(map["name"], Value::from(r"café \u12"));
        assert_eq!(map["quoted"], Value::from("a\tb"));
    }
}
