//! Unit tests of `state.rs`.

use super::*;

fn state() -> State {
    State {
        id: "cnf_abcdefghijkl".into(),
        route: "crm".into(),
        tool: "delete_customer".into(),
        args: "ab".repeat(32),
        principal: Some("alice".into()),
        session: None,
        exp: 10_000,
        policy: "guard".into(),
        up_state: Some("upstream-opaque".into()),
        up_responses: Some(serde_json::json!({"k": {"action": "accept"}})),
    }
}

fn binding(s: &State) -> Binding<'_> {
    Binding {
        route: &s.route,
        tool: &s.tool,
        args: &s.args,
        principal: s.principal.as_deref(),
        session: s.session.as_deref(),
    }
}

fn key() -> StateKey {
    StateKey::new(b"0123456789abcdef0123456789abcdef".to_vec())
}

#[test]
fn a_sealed_state_opens_to_what_was_sealed() {
    let s = state();
    let wire = key().seal(&s);
    assert!(wire.starts_with(PREFIX));
    assert_eq!(key().open(&wire, 9_999, &binding(&s)), Ok(s));
}

#[test]
fn any_changed_byte_is_refused() {
    let s = state();
    let wire = key().seal(&s);
    // Flip one character of the payload and one of the tag, staying in the base64url alphabet.
    for at in [PREFIX.len() + 3, wire.len() - 2] {
        let mut bytes = wire.clone().into_bytes();
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        let err = key().open(&tampered, 0, &binding(&s)).unwrap_err();
        assert!(
            matches!(err, StateError::BadSignature | StateError::Malformed),
            "{err:?}"
        );
    }
    // A payload re-encoded with a later expiry but the old tag.
    let (_, tag) = wire.rsplit_once('.').unwrap();
    let mut later = s.clone();
    later.exp = i64::MAX;
    let forged = format!(
        "{PREFIX}{}.{tag}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&later).unwrap())
    );
    assert_eq!(
        key().open(&forged, 0, &binding(&s)),
        Err(StateError::BadSignature)
    );
}

#[test]
fn another_key_is_refused() {
    let s = state();
    let wire = StateKey::random().unwrap().seal(&s);
    assert_eq!(
        key().open(&wire, 0, &binding(&s)),
        Err(StateError::BadSignature)
    );
}

#[test]
fn malformed_states_are_refused() {
    let s = state();
    for wire in [
        "",
        "upstream-state",
        PREFIX,
        "mcpgw1.nodot",
        "mcpgw1.%%%.%%%",
        "mcpgw1.e30.AAAA",
    ] {
        let err = key().open(wire, 0, &binding(&s)).unwrap_err();
        assert!(
            matches!(err, StateError::Malformed | StateError::BadSignature),
            "{wire}: {err:?}"
        );
    }
    let huge = format!("{PREFIX}{}", "A".repeat(MAX_STATE_BYTES));
    assert_eq!(
        key().open(&huge, 0, &binding(&s)),
        Err(StateError::Malformed)
    );
}

#[test]
fn an_expired_state_is_refused_with_its_id() {
    let s = state();
    let wire = key().seal(&s);
    let err = key().open(&wire, 10_000, &binding(&s)).unwrap_err();
    assert_eq!(
        err,
        StateError::Expired {
            id: "cnf_abcdefghijkl".into()
        }
    );
    assert_eq!(err.id(), Some("cnf_abcdefghijkl"));
}

#[test]
fn a_state_for_another_call_is_refused() {
    let s = state();
    let wire = key().seal(&s);
    let other_args = "cd".repeat(32);
    let cases: [(Binding<'_>, &str); 5] = [
        (
            Binding {
                route: "docs",
                ..binding(&s)
            },
            "route",
        ),
        (
            Binding {
                tool: "delete_order",
                ..binding(&s)
            },
            "tool",
        ),
        (
            Binding {
                args: &other_args,
                ..binding(&s)
            },
            "set of arguments",
        ),
        (
            Binding {
                principal: Some("mallory"),
                ..binding(&s)
            },
            "caller",
        ),
        (
            Binding {
                session: Some("s-1"),
                ..binding(&s)
            },
            "session",
        ),
    ];
    for (b, field) in cases {
        assert_eq!(
            key().open(&wire, 0, &b),
            Err(StateError::Mismatch {
                id: s.id.clone(),
                field
            })
        );
    }
    assert_eq!(
        key()
            .open(
                &wire,
                0,
                &Binding {
                    principal: None,
                    ..binding(&s)
                }
            )
            .unwrap_err()
            .id(),
        Some("cnf_abcdefghijkl")
    );
}
