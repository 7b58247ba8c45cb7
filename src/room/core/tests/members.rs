//! Members: presence (a user counts once), leaving, typing, slow consumers.

use super::*;

#[test]
fn a_member_sees_itself_in_presence_and_others_get_a_diff_once_per_user() {
    let mut sim = Sim::started(false, 0);
    sim.member("s1", "bob");
    let fx = sim.member("s2", "cat");
    assert_eq!(
        presence_diffs_to(&fx, "s1"),
        vec![(vec!["cat".into()], vec![])]
    );
    let presence = json(&frames_to(&fx, "s2")[1].frame);
    assert_eq!(presence["type"], "presence");
    assert_eq!(presence["users"].as_array().map(Vec::len), Some(2));
    let fx = sim.member("s3", "cat");
    assert!(
        presence_diffs_to(&fx, "s1").is_empty(),
        "cat's second socket is not news"
    );
}

#[test]
fn leaving_with_a_reply_sends_left_and_the_others_see_the_user_go() {
    let mut sim = Sim::started(false, 0);
    sim.member("s1", "bob");
    sim.member("s2", "cat");
    let fx = sim.step(Input::Leave {
        session: SessionId::from("s2"),
        r#ref: Some("r9".into()),
        reply: true,
    });
    let left = json(&frames_to(&fx, "s2")[0].frame);
    assert_eq!(
        (left["type"].as_str(), left["ref"].as_str()),
        (Some("left"), Some("r9"))
    );
    assert_eq!(
        presence_diffs_to(&fx, "s1"),
        vec![(vec![], vec!["cat".into()])]
    );
    let fx = sim.commit(1, 1);
    assert!(seqs_to(&fx, "s2").is_empty(), "nothing more after leaving");
}

#[test]
fn a_slow_member_is_evicted_with_a_notice_and_the_others_see_it_leave() {
    let mut sim = Sim::started(false, 0);
    sim.member("s1", "bob");
    sim.member("s2", "cat");
    let fx = sim.step(Input::Undeliverable {
        session: SessionId::from("s2"),
        slow: true,
    });
    assert_eq!(dropped_to(&fx, "s2"), vec![DropReason::Slow]);
    assert!(
        fx.iter()
            .any(|e| matches!(e, Effect::Count(Count::SlowConsumer)))
    );
    assert_eq!(
        presence_diffs_to(&fx, "s1"),
        vec![(vec![], vec!["cat".into()])]
    );
    // A gone session is dropped without a notice.
    let fx = sim.step(Input::Undeliverable {
        session: SessionId::from("s1"),
        slow: false,
    });
    assert!(dropped_to(&fx, "s1").is_empty());
    assert_eq!(sim.core.members(), 0);
}

#[test]
fn typing_reaches_the_other_users_and_the_other_nodes_but_not_the_typist() {
    let mut sim = Sim::started(true, 0);
    sim.member("s1", "bob");
    sim.member("s2", "bob");
    sim.member("s3", "cat");
    let fx = sim.step(Input::Typing {
        session: SessionId::from("s1"),
        user: "bob".into(),
    });
    assert!(types_to(&fx, "s1").is_empty() && types_to(&fx, "s2").is_empty());
    assert_eq!(types_to(&fx, "s3"), ["typing"]);
    assert!(matches!(
        published(&fx)[..],
        [(None, RoomEvent::Typing { .. })]
    ));
    let fx = sim.step(Input::Typing {
        session: SessionId::from("nobody"),
        user: "eve".into(),
    });
    assert!(fx.is_empty(), "only members type");
}

#[test]
fn presence_changes_are_announced_to_the_other_nodes() {
    let mut sim = Sim::started(true, 0);
    let fx = sim.member("s1", "bob");
    assert!(fx.iter().any(|e| matches!(
        e,
        Effect::Announce { here, .. } if here.iter().any(|u| u.user == "bob")
    )));
    let alone = Sim::started(false, 0).member("s1", "bob");
    assert!(!alone.iter().any(|e| matches!(e, Effect::Announce { .. })));
}

#[test]
fn a_read_receipt_goes_to_everyone_but_the_readers_own_sessions() {
    let mut sim = Sim::started(false, 0);
    sim.member("s1", "bob");
    sim.member("s2", "cat");
    let frame = bytestring::ByteString::from_static(r#"{"type":"read","user":"bob"}"#);
    let fx = sim.step(Input::ReadReceipt {
        user: "bob".into(),
        frame,
    });
    assert!(types_to(&fx, "s1").is_empty());
    assert_eq!(types_to(&fx, "s2"), ["read"]);
}
