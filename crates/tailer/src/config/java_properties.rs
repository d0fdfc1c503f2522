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
            let hex: String = (0..4).filter_map(|_| rest.next()).collect();
            u32::from_str_radix(&hex, 16)
                .ok()
                .and_then(char::from_u32)
                .unwrap_or('\u{fffd}')
        }
        Some(other) => other,
        None => '\\',
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

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
