use super::*;

#[test]
fn doubles_print_as_java_does() {
    for (x, java) in [
        (120.0, "120.0"),
        (4.9, "4.9"),
        (0.001, "0.001"),
        (0.0001, "1.0E-4"),
        (1e7, "1.0E7"),
        (9_999_999.0, "9999999.0"),
        (1e20, "1.0E20"),
        (-1.5e-7, "-1.5E-7"),
        (123_456.789, "123456.789"),
        (0.0, "0.0"),
        (29.99, "29.99"),
    ] {
        assert_eq!(java_double(x), java, "{x}");
    }
}

#[test]
fn strings_escape_as_jackson_does() {
    let mut out = Vec::new();
    write_string(&mut out, "a\"b\\c\n\u{1}/é");
    assert_eq!(String::from_utf8(out).unwrap(), r#""a\"b\\c\n\u0001/é""#);
}

#[test]
fn expansion_types_numbers_and_drops_nulls_and_empty_arrays() {
    let text = br#"{"id": 1, "big": 10000000000, "price": 120.00, "note": null, "tags": [], "items": [{"a": 1}, {"b": "x"}]}"#;
    let out = String::from_utf8(expand(text).unwrap()).unwrap();
    assert_eq!(
        out,
        r#"{"id":1,"big":10000000000,"price":120.0,"items":[{"a":1,"b":null},{"a":null,"b":"x"}]}"#
    );
}

#[test]
fn untypable_payloads_stay_strings() {
    assert_eq!(expand(br#"{"mixed": [1, "a"]}"#), None);
    assert_eq!(expand(br#"{"numbers": [1, 2.5]}"#), None);
    assert_eq!(expand(br#"{"nulls": [null]}"#), None);
    assert_eq!(expand(br#" {"lead": 1}"#), None);
    assert_eq!(expand(br#""a string""#), None);
    assert_eq!(expand(br#"{"huge": 10000000000000000000}"#), None);
    assert_eq!(expand(b"[]"), None, "an untyped document stays a string");
    assert_eq!(
        expand(br#"{"a": [[], [1]]}"#),
        None,
        "typed by the first element"
    );
}

#[test]
fn arrays_of_arrays_take_the_first_inner_arrays_kind() {
    let out = expand(br#"{"o": [[{"a": 1}], [{"b": 2}]]}"#).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        r#"{"o":[[{"a":1}],[{"a":null}]]}"#
    );
}

#[test]
fn characters_beyond_the_bmp_are_surrogate_pair_escapes() {
    let mut out = Vec::new();
    write_string(&mut out, "emoji-😀é");
    assert_eq!(String::from_utf8(out).unwrap(), "\"emoji-\\uD83D\\uDE00é\"");
}
