//! What a failure detail may show of a peer's words. Details are published verbatim
//! (`/api/v1/status`, the status page, alerts), and a peer controls what it answers: a
//! server that echoes the LOGIN line would publish the probe's password, one that answers
//! with terminal escapes or bidi overrides would garble every screen showing the detail,
//! and one that answers a megabyte would put it in every alert. So every detail that
//! quotes a peer goes through [`peer_text`]: credentials redacted (plain, in any ASCII
//! case, or inside base64 as AUTH PLAIN and HTTP basic carry them), control and bidi
//! characters replaced by spaces, at most [`MAX_EXCERPT_CHARS`] characters.

use base64::Engine as _;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};

/// Longest peer excerpt in a detail, in characters; longer ones end with `…`.
pub const MAX_EXCERPT_CHARS: usize = 200;
/// Longest detail as a whole (our words around at most a couple of excerpts).
pub(crate) const MAX_DETAIL_CHARS: usize = 600;
/// Bytes of peer text looked at: more could never show within the excerpt.
const MAX_INPUT_BYTES: usize = 64 * 1024;
const REDACTED: &str = "[redacted]";

/// The credentials a probe sends, which no detail may show, even when the peer echoes
/// them. Each is kept ASCII-lowercased, for case-insensitive matching.
#[derive(Clone, Default)]
pub struct Secrets(Vec<Vec<u8>>);

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets({} redacted)", self.0.len())
    }
}

impl Secrets {
    /// No credentials: sanitizing still strips control characters and bounds the length.
    pub const NONE: Secrets = Secrets(Vec::new());

    /// `values` and the forms a peer would echo them in: an IMAP quoted string escapes
    /// `"` and `\`. Empty values are skipped.
    pub fn new<S: AsRef<str>>(values: impl IntoIterator<Item = S>) -> Self {
        let mut forms: Vec<Vec<u8>> = Vec::new();
        for value in values {
            let value = value.as_ref();
            if value.is_empty() {
                continue;
            }
            let quoted = value.replace('\\', "\\\\").replace('"', "\\\"");
            for form in [value, quoted.as_str()] {
                let form = form.to_ascii_lowercase().into_bytes();
                if !forms.contains(&form) {
                    forms.push(form);
                }
            }
        }
        // Longest first, so a secret containing another is redacted whole.
        forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
        Secrets(forms)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn found_in(&self, bytes: &[u8]) -> bool {
        let lower = bytes.to_ascii_lowercase();
        self.0
            .iter()
            .any(|s| lower.windows(s.len()).any(|w| w == s.as_slice()))
    }

    /// `text` with every plain occurrence of a secret, and every base64 run that decodes
    /// to something containing one, replaced by `[redacted]`.
    fn redact(&self, text: &str) -> String {
        if self.is_empty() {
            return text.to_string();
        }
        let mut text = text.to_string();
        for secret in &self.0 {
            let mut out = String::with_capacity(text.len());
            let lower = text.to_ascii_lowercase();
            let mut rest = 0;
            let mut at = 0;
            // ASCII lowercasing keeps byte offsets, and a match of a valid UTF-8 secret
            // starts and ends on character boundaries.
            while let Some(found) = find(&lower.as_bytes()[at..], secret) {
                let start = at + found;
                out.push_str(&text[rest..start]);
                out.push_str(REDACTED);
                rest = start + secret.len();
                at = rest;
            }
            out.push_str(&text[rest..]);
            text = out;
        }
        self.redact_base64(&text)
    }

    fn redact_base64(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = 0;
        for (start, end) in base64_runs(text) {
            if self.base64_hides_secret(&text[start..end]) {
                out.push_str(&text[rest..start]);
                out.push_str(REDACTED);
                rest = end;
            }
        }
        out.push_str(&text[rest..]);
        out
    }

    /// Whether `run` (base64 alphabet, standard or URL-safe) decodes, from any of the four
    /// alignments, to bytes holding a secret: a peer may prefix an encoding with junk.
    fn base64_hides_secret(&self, run: &str) -> bool {
        const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true);
        const STANDARD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, LENIENT);
        const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, LENIENT);
        let run = run.trim_end_matches('=');
        (0..4).any(|skip| {
            let Some(aligned) = run.get(skip..) else {
                return false;
            };
            // A length of 4n+1 cannot be base64: the last character is junk too.
            let aligned = &aligned[..aligned.len() - usize::from(aligned.len() % 4 == 1)];
            [STANDARD, URL_SAFE].iter().any(|engine| {
                engine
                    .decode(aligned)
                    .is_ok_and(|bytes| self.found_in(&bytes))
            })
        })
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Byte ranges of the maximal runs of base64 characters (both alphabets, with padding).
fn base64_runs(text: &str) -> Vec<(usize, usize)> {
    let is_b64 = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_' | b'=');
    let mut runs = Vec::new();
    let mut start = None;
    for (i, &b) in text.as_bytes().iter().enumerate() {
        match (is_b64(b), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                runs.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        runs.push((s, text.len()));
    }
    runs
}

/// Control characters (C0, DEL, C1) and the invisible ones that reorder or hide text.
fn hostile_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// `text` as a detail may carry it: secrets redacted, hostile characters replaced by a
/// space, at most `max_chars` characters (the last one `…` when cut).
fn sanitize(text: &str, secrets: &Secrets, max_chars: usize) -> String {
    let redacted = secrets.redact(text);
    let mut out = String::with_capacity(redacted.len().min(max_chars * 4));
    let mut chars = redacted
        .chars()
        .map(|c| if hostile_char(c) { ' ' } else { c });
    for c in chars.by_ref().take(max_chars) {
        out.push(c);
    }
    if chars.next().is_some() {
        out.pop();
        out.push('…');
    }
    out
}

/// Peer bytes quoted in a failure detail: lossy UTF-8, then [`sanitize`]d to at most
/// [`MAX_EXCERPT_CHARS`].
pub fn peer_text(bytes: &[u8], secrets: &Secrets) -> String {
    let bytes = &bytes[..bytes.len().min(MAX_INPUT_BYTES)];
    sanitize(&String::from_utf8_lossy(bytes), secrets, MAX_EXCERPT_CHARS)
}

/// [`peer_text`] for a probe that sends no credentials.
pub fn excerpt(bytes: &[u8]) -> String {
    peer_text(bytes, &Secrets::NONE)
}

/// The last pass over a whole detail before it is published: whatever path built it, no
/// secret, no control character, and a bounded length.
pub(crate) fn detail(text: &str, secrets: &Secrets) -> String {
    sanitize(text, secrets, MAX_DETAIL_CHARS)
}

/// Parses the `Authorization` value a probe sends into what must not be published: the
/// whole value, its credentials, and for `Basic` the decoded `user:password` and password.
pub(crate) fn authorization_secrets(value: &str) -> Vec<String> {
    let mut out = vec![value.to_string()];
    if let Some((scheme, credentials)) = value.trim().split_once(' ') {
        let credentials = credentials.trim();
        out.push(credentials.to_string());
        if scheme.eq_ignore_ascii_case("basic")
            && let Ok(decoded) = general_purpose::STANDARD.decode(credentials)
            && let Ok(pair) = String::from_utf8(decoded)
        {
            if let Some((_, password)) = pair.split_once(':') {
                out.push(password.to_string());
            }
            out.push(pair);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn secrets_are_redacted_plain_in_any_case_and_quoted() {
        let secrets = Secrets::new(["Hunter\"2"]);
        let text = peer_text(b"t2 NO LOGIN u \"hunter\\\"2\" or HUNTER\"2", &secrets);
        assert_eq!(text, "t2 NO LOGIN u \"[redacted]\" or [redacted]");
    }

    #[test]
    fn base64_holding_a_secret_is_redacted_whatever_wraps_it() {
        let secrets = Secrets::new(["s3cret-pass"]);
        for encoded in [
            b64("\0user\0s3cret-pass"), // AUTH PLAIN
            b64("s3cret-pass"),         // AUTH LOGIN's second answer
            b64("user:s3cret-pass"),    // HTTP basic
            b64("t2 LOGIN \"user\" \"s3cret-pass\" trailing"),
            format!("x{}", b64("user:s3cret-pass")), // misaligned by junk
            general_purpose::URL_SAFE_NO_PAD.encode("\u{ff}\u{fe}s3cret-pass"),
        ] {
            let text = peer_text(format!("535 {encoded} rejected").as_bytes(), &secrets);
            assert_eq!(text, "535 [redacted] rejected", "{encoded}");
        }
        // Base64 of something else is left as it is.
        let other = b64("user:another");
        assert_eq!(peer_text(other.as_bytes(), &secrets), other);
    }

    #[test]
    fn control_and_bidi_characters_become_spaces() {
        let text = excerpt("a\x1b[31mb\r\nc\u{7f}\u{85}d\u{202e}e\u{2066}f".as_bytes());
        assert_eq!(text, "a [31mb  c  d e f");
        assert!(!text.chars().any(hostile_char));
        assert_eq!(excerpt(b"\xff\xfeok"), "\u{fffd}\u{fffd}ok");
    }

    #[test]
    fn length_is_bounded_with_an_ellipsis_after_redaction() {
        let long = "é".repeat(MAX_EXCERPT_CHARS + 50);
        let text = excerpt(long.as_bytes());
        assert_eq!(text.chars().count(), MAX_EXCERPT_CHARS);
        assert!(text.ends_with('…'));
        let exact = "x".repeat(MAX_EXCERPT_CHARS);
        assert_eq!(excerpt(exact.as_bytes()), exact);
        // A secret straddling the cut is redacted before cutting: no prefix of it shows.
        let secrets = Secrets::new(["abcdefghij"]);
        let text = peer_text(
            format!("{}abcdefghij", "-".repeat(MAX_EXCERPT_CHARS - 4)).as_bytes(),
            &secrets,
        );
        assert!(!text.contains("abc"), "{text}");
    }

    #[test]
    fn basic_authorization_yields_pair_and_password() {
        let value = format!("Basic {}", b64("probe:pa:ss"));
        let secrets = authorization_secrets(&value);
        assert!(secrets.contains(&"probe:pa:ss".to_string()), "{secrets:?}");
        assert!(secrets.contains(&"pa:ss".to_string()), "{secrets:?}");
        assert_eq!(
            authorization_secrets("Bearer tok"),
            ["Bearer tok".to_string(), "tok".to_string()]
        );
    }
}
