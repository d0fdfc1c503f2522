use super::*;

#[test]
fn bytea_hex_decodes() {
    assert_eq!(
        decode_bytea_hex(b"\\x00ff10").unwrap().as_ref(),
        &[0, 255, 16]
    );
    assert!(decode_bytea_hex(b"00ff").is_none());
    assert!(decode_bytea_hex(b"\\x0").is_none());
    assert!(decode_bytea_hex(b"\\xzz").is_none());
}

#[test]
fn topic_names() {
    assert!(valid_topic("outbox.event.order"));
    assert!(!valid_topic("outbox event"));
    assert!(!valid_topic(""));
}

fn row(config: &RouteConfig, key: Option<&str>, payload: &str) -> OutboxRow {
    row_with_headers(config, key, payload, None)
}

fn row_with_headers(
    config: &RouteConfig,
    key: Option<&str>,
    payload: &str,
    headers: Option<&str>,
) -> OutboxRow {
    let decoder = crate::relay::decode::EventDecoder::new(
        crate::pg::names::TableName::parse("outbox").unwrap(),
        config.clone(),
    )
    .unwrap();
    let text = |s: &str| TupleValue::Text(Bytes::from(s.to_owned()));
    // Envelope order: id, route-by, key, type, payload, headers.
    decoder.row_from_values(vec![
        text("e-1"),
        text("order"),
        key.map_or(TupleValue::Null, text),
        text("Created"),
        text(payload),
        headers.map_or(TupleValue::Null, text),
    ])
}

fn position() -> TxnPosition {
    TxnPosition {
        commit_lsn: Lsn::from(0x100),
        xid: 9,
        commit_time: Some(PgTimestamp::from_unix_micros(0)),
    }
}

#[test]
fn a_record_over_the_size_limit_is_unroutable_or_dead_lettered() {
    let mut config = RouteConfig {
        max_message_bytes: 1_000,
        ..RouteConfig::default()
    };
    let big = format!("\"{}\"", "x".repeat(2_000));
    let router = Router::new(config.clone()).unwrap();
    let err = router
        .route(&row(&config, Some("k"), &big), &position(), 0)
        .unwrap_err();
    assert!(
        err.reason.contains("exceeds max_message_bytes"),
        "{}",
        err.reason
    );
    assert!(matches!(
        router.route_event(&row(&config, Some("k"), &big), &position(), 0, None),
        Err(TailerError::Unroutable { .. })
    ));

    config.dead_letter_topic = Some("outbox.dlq".into());
    let router = Router::new(config.clone()).unwrap();
    let routed = router
        .route_event(&row(&config, Some("k"), &big), &position(), 0, None)
        .unwrap();
    assert_eq!(routed.record.topic, "outbox.dlq");
    assert_eq!(
        routed.record.payload, None,
        "the oversized payload is dropped"
    );
    assert!(routed.dead_letter_reason.is_some());
}

#[test]
fn a_null_key_is_unroutable() {
    let config = RouteConfig::default();
    let router = Router::new(config.clone()).unwrap();
    let err = router
        .route(&row(&config, None, "{}"), &position(), 0)
        .unwrap_err();
    assert!(err.reason.contains("aggregateid"), "{}", err.reason);
}

#[test]
fn defaults_route_like_debezium() {
    let config = RouteConfig::default();
    let router = Router::new(config.clone()).unwrap();
    let r = router
        .route(&row(&config, Some("o-1"), "{\"a\": 1}"), &position(), 3)
        .unwrap();
    assert_eq!(r.topic, "outbox.event.order");
    assert_eq!(r.key.as_deref(), Some(&b"o-1"[..]));
    assert_eq!(r.payload.as_deref(), Some(&b"{\"a\": 1}"[..]));
    let h = |k: &str| {
        r.headers
            .iter()
            .find(|(n, _)| n == k)
            .and_then(|(_, v)| v.clone())
    };
    assert_eq!(h(HEADER_ID).as_deref(), Some(&b"e-1"[..]));
    assert_eq!(h(HEADER_TYPE).as_deref(), Some(&b"Created"[..]));
    assert_eq!(h(HEADER_LSN).as_deref(), Some(&b"0/100"[..]));
    assert_eq!(h(HEADER_SEQ).as_deref(), Some(&b"3"[..]));
}

#[test]
fn a_headers_entry_may_not_shadow_a_position_header() {
    let config = RouteConfig::default();
    let router = Router::new(config.clone()).unwrap();
    for name in ["outbox-lsn", "Outbox-Seq", "outbox-anything"] {
        let headers = format!("{{\"{name}\": \"0/0\"}}");
        let r = row_with_headers(&config, Some("k"), "{}", Some(&headers));
        let e = router.route(&r, &position(), 0).unwrap_err();
        assert!(e.reason.contains("would shadow"), "{name}: {}", e.reason);
    }
    let r = row_with_headers(&config, Some("k"), "{}", Some("{\"tenant\": \"acme\"}"));
    assert!(router.route(&r, &position(), 0).is_ok());
}
