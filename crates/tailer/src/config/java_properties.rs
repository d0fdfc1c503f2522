//! `java.util.Properties` text, as Java programs write it: Debezium's `tracingspancontext`
//! column and Kafka Connect's `.properties` connector files.

/// Key/value pairs of a `java.util.Properties` text: `#`/`!` comments, `=`, `:` or white
/// space as separator, backslash escapes (`\t`, `\n`, `\uXXXX`, `\=` …) and continuation
/// lines.
pub fn parse(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut logical = String::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if logical.is_empty() && (trimmed.is_empty() || trimmed.starts_with(['#', '!'])) {
            continue;
        }
        logical.push_str(trimmed);
        // An odd number of trailing backslashes continues the line.
        let trailing = logical.chars().rev().take_while(|c| *c == '\\').count();
        if trailing % 2 == 1 {
            logical.pop();
            if lines.clone().next().is_some() {
                continue;
            }
        }
        out.push(split_entry(&std::mem::take(&mut logical)));
    }
    out
}

fn split_entry(line: &str) -> (String, String) {
    let mut key = String::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => key.push(unescape(chars.next(), &mut chars)),
            '=' | ':' => break,
            c if c.is_whitespace() => {
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
                if chars.peek().is_some_and(|c| *c == '=' || *c == ':') {
                    chars.next();
                }
                break;
            }
            c => key.push(c),
        }
    }
    while chars.peek().is_some_and(|c| c.is_whitespace()) {
        chars.next();
    }
    let mut value = String::new();
    while let Some(c) = chars.next() {
        match c {
            '\\' => value.push(unescape(chars.next(), &mut chars)),
            c => value.push(c),
        }
    }
    (key, value)
}

fn unescape(c: Option<char>, rest: &mut std::iter::Peekable<std::str::Chars<'_>>) -> char {
    match c {
        Some('t') => '\t',
        Some('n') => '\n',
        Some('r') => '\r',
        Some('f') => '\u{c}',
        Some('u') => {
            let unit = hex4(rest);
            match unit {
                // A high surrogate: Java writes a character beyond the BMP as two `\u`s.
                Some(high @ 0xD800..=0xDBFF) => {
                    let mut ahead = rest.clone();
                    let low = (ahead.next() == Some('\\') && ahead.next() == Some('u'))
                        .then(|| hex4(&mut ahead))
                        .flatten()
                        .filter(|low| (0xDC00..=0xDFFF).contains(low));
                    match low {
                        Some(low) => {
                            *rest = ahead;
                            char::from_u32(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))
                                .unwrap_or('\u{fffd}')
                        }
                        None => '\u{fffd}',
                    }
                }
                Some(unit) => char::from_u32(unit).unwrap_or('\u{fffd}'),
                None => '\u{fffd}',
            }
        }
        Some(other) => other,
        None => '\\',
    }
}

/// Four hex digits of a `\uXXXX` escape.
fn hex4(rest: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<u32> {
    let hex: String = (0..4).filter_map(|_| rest.next()).collect();
    u32::from_str_radix(&hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn a_surrogate_pair_escape_is_one_character() {
        let entries = parse("k=emoji-\\uD83D\\uDE00!\nlone=\\uD83D.");
        assert_eq!(entries[0], ("k".into(), "emoji-😀!".into()));
        assert_eq!(entries[1], ("lone".into(), "\u{fffd}.".into()));
    }

    #[test]
    fn separators_continuations_and_unicode_escapes() {
        let text = "! comment\n  traceparent : 00-0af7651916cd43dd8448eb211c80319c-\\\n   b7ad6b7169203331-01\nother\\u003dkey=x";
        let entries = parse(text);
        assert_eq!(
            entries[0],
            (
                "traceparent".into(),
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()
            )
        );
        assert_eq!(entries[1], ("other=key".into(), "x".into()));
    }
}
