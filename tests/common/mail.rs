//! Mails as Exim stores them (Maildir files): headers unfolded, parts and encodings
//! decoded, for the e-mail receiver's and the subscriptions' tests.

/// A delivered mail: its unfolded headers and its body, as stored.
pub struct Mail {
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Mail {
    pub fn parse(raw: &str) -> Mail {
        let raw = raw.replace("\r\n", "\n");
        let (head, body) = raw
            .split_once("\n\n")
            .expect("headers, a blank line, a body");
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in head.lines() {
            if line.starts_with([' ', '\t']) {
                let last = headers.last_mut().expect("a continuation follows a header");
                last.1.push(' ');
                last.1.push_str(line.trim());
            } else {
                let (name, value) = line.split_once(':').expect("name: value");
                headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
            }
        }
        Mail {
            headers,
            body: body.to_string(),
        }
    }

    /// The one header of this name; panics when it is missing or repeated.
    pub fn header(&self, name: &str) -> &str {
        let found: Vec<&str> = self
            .headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(found.len(), 1, "{name}: {found:?}");
        found[0]
    }

    pub fn has(&self, name: &str) -> bool {
        self.headers.iter().any(|(n, _)| n == name)
    }

    /// The body decoded as its `Content-Transfer-Encoding` says (a single-part mail).
    pub fn text(&self) -> String {
        use base64::Engine as _;
        let encoding = self
            .headers
            .iter()
            .find(|(n, _)| n == "content-transfer-encoding")
            .map(|(_, v)| v.to_ascii_lowercase())
            .unwrap_or_default();
        match encoding.as_str() {
            "quoted-printable" => quoted_printable(&self.body),
            "base64" => String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(self.body.split_whitespace().collect::<String>())
                    .unwrap(),
            )
            .unwrap(),
            _ => self.body.clone(),
        }
    }

    /// The decoded `Subject` (RFC 2047 base64 or Q words, as lettre writes them).
    pub fn subject(&self) -> String {
        decode_words(self.header("subject"))
    }

    /// The parts of a `multipart/alternative` body: (content type, decoded text).
    pub fn parts(&self) -> Vec<(String, String)> {
        let content_type = self.header("content-type");
        assert!(
            content_type.starts_with("multipart/alternative"),
            "{content_type}"
        );
        let boundary = content_type
            .split("boundary=")
            .nth(1)
            .expect("a boundary")
            .trim_matches('"');
        let delimiter = format!("--{boundary}");
        self.body
            .split(&delimiter)
            .skip(1)
            .filter(|p| !p.starts_with("--"))
            .map(|part| {
                let part = Mail::parse(part.trim_start_matches('\n'));
                assert_eq!(part.header("content-transfer-encoding"), "quoted-printable");
                (
                    part.header("content-type").to_string(),
                    quoted_printable(&part.body),
                )
            })
            .collect()
    }
}

/// RFC 2047 encoded words (`=?utf-8?b?…?=`, `=?utf-8?q?…?=`); plain words are kept.
fn decode_words(value: &str) -> String {
    use base64::Engine as _;
    let mut out = String::new();
    let mut last_encoded = false;
    for word in value.split_whitespace() {
        let inner = word
            .strip_prefix("=?")
            .and_then(|w| w.strip_suffix("?="))
            .and_then(|w| w.split_once('?'))
            .and_then(|(_charset, rest)| rest.split_once('?'));
        match inner {
            Some((encoding, text)) => {
                let bytes = if encoding.eq_ignore_ascii_case("b") {
                    base64::engine::general_purpose::STANDARD
                        .decode(text)
                        .unwrap()
                } else {
                    quoted_printable(&text.replace('_', " ")).into_bytes()
                };
                // Space between two encoded words is not text; beside a plain word it is.
                if !out.is_empty() && !last_encoded {
                    out.push(' ');
                }
                out.push_str(&String::from_utf8(bytes).unwrap());
                last_encoded = true;
            }
            None => {
                if !out.is_empty() {
                    out.push(' ');
                }
                out.push_str(word);
                last_encoded = false;
            }
        }
    }
    out
}

/// Quoted-printable to text: soft line breaks joined, `=XX` decoded.
pub fn quoted_printable(text: &str) -> String {
    let joined = text.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .filter(|_| bytes[i] == b'=')
            .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        if let Some(b) = hex {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap()
}
