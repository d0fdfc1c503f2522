use crate::config::SlotThresholds;
use crate::pg::slot_status::*;

fn slot() -> SlotStatus {
    SlotStatus {
        slot: "s".into(),
        plugin: Some("pgoutput".into()),
        slot_type: "logical".into(),
        database: Some("db".into()),
        active: true,
        active_pid: Some(7),
        confirmed_flush_lsn: Some("0/100".into()),
        restart_lsn: Some("0/80".into()),
        wal_status: Some("reserved".into()),
        safe_wal_size: None,
        invalidation_reason: None,
        two_phase: false,
        current_wal_lsn: "0/200".into(),
        lag_bytes: Some(256),
        retained_bytes: Some(384),
        wal_level: "logical".into(),
        max_slot_wal_keep_size: "-1".into(),
        publication: PublicationStatus {
            name: "p".into(),
            exists: true,
            publishes: vec!["insert".into()],
            tables: vec!["public.outbox".into()],
            includes_outbox_table: true,
        },
        thresholds: SlotThresholds::default().into(),
        verdict: Verdict {
            health: Health::Healthy,
            summary: String::new(),
            action: String::new(),
        },
        replay_window: None,
        failover: None,
    }
}

#[test]
fn verdicts_in_order_of_severity() {
    let t = SlotThresholds {
        lag_warn_bytes: 1000,
        safe_wal_warn_bytes: 1000,
    };
    let mut s = slot();
    assert_eq!(judge(&s, t).health, Health::Healthy);
    s.lag_bytes = Some(5000);
    assert_eq!(judge(&s, t).health, Health::Lagging);
    s.safe_wal_size = Some(10);
    assert_eq!(judge(&s, t).health, Health::AtRisk);
    s.wal_status = Some("unreserved".into());
    s.safe_wal_size = Some(-5);
    assert_eq!(judge(&s, t).health, Health::AtRisk);
    s.wal_status = Some("lost".into());
    let v = judge(&s, t);
    assert_eq!(v.health, Health::Invalidated);
    assert!(v.action.contains("docs/operations.md"), "{}", v.action);
}

#[test]
fn bytes_for_people() {
    assert_eq!(human_bytes(12), "12 bytes");
    assert_eq!(human_bytes(1536), "1.5 KiB (1536 bytes)");
}
