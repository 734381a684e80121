//! Every export of the C ABI, called with NULL where it takes a pointer: each answers
//! `PORTCULLIS_RESULT_NULL_PARAMETER` with a message naming the parameter (or, for `_free`,
//! does nothing), and none crashes. Then the same with live handles and NULL outputs: nothing is
//! written, nothing is consumed.

use std::ptr::{null, null_mut};

use portcullis::ffi::*;

const NULL: portcullis_result = portcullis_result::NullParameter;

const CONFIG: &str = r#"
[[policy]]
name = "api"
limit = "10/s"
[[policy]]
name = "export"
algorithm = "concurrency"
limit = 1
lease_timeout = "1m"
[[route]]
match = "/"
limits = [{ policy = "api", key = "ip" }]
[cors]
allowed_origins = ["https://app.example.com"]
"#;

fn last_error() -> String {
    let mut buf = vec![0u8; 512];
    let mut len = 0usize;
    // SAFETY: a live buffer of its length and a local out-pointer.
    let r = unsafe { portcullis_last_error(buf.as_mut_ptr(), buf.len(), &mut len) };
    assert_eq!(r, portcullis_result::Ok);
    buf.truncate(len);
    String::from_utf8(buf).expect("messages are UTF-8")
}

/// Asserts a NULL-parameter result whose message names `what`.
fn null_naming(result: portcullis_result, what: &str) {
    assert_eq!(result, NULL, "expected NULL_PARAMETER naming {what}");
    let message = last_error();
    assert!(message.contains(what), "{message:?} should name {what}");
}

fn s(text: &str) -> portcullis_str {
    portcullis_str {
        ptr: text.as_ptr(),
        len: text.len(),
    }
}

#[test]
fn every_export_refuses_null_handles() {
    let mut d = portcullis_decision::default();
    let mut lease: *mut portcullis_lease = null_mut();
    let mut n = 0usize;
    let mut v = s("");
    let mut id = 0u32;
    let mut had = false;
    let mut buf = [0u8; 16];
    let k = b"key";
    // SAFETY: every pointer is NULL or points to a live local; NULL handles are the point.
    unsafe {
        null_naming(
            portcullis_limiter_open(null(), 3, null_mut()),
            "out_limiter",
        );
        null_naming(
            portcullis_limiter_open_file(null(), 3, null_mut()),
            "out_limiter",
        );
        null_naming(
            portcullis_limiter_policy(null(), k.as_ptr(), 3, &mut id),
            "limiter",
        );
        for f in [
            portcullis_limiter_check,
            portcullis_limiter_peek,
            portcullis_limiter_penalize,
            portcullis_limiter_refund,
        ] {
            null_naming(f(null(), 0, k.as_ptr(), 3, 1, &mut d), "limiter");
        }
        for f in [
            portcullis_limiter_check_at,
            portcullis_limiter_peek_at,
            portcullis_limiter_penalize_at,
            portcullis_limiter_refund_at,
        ] {
            null_naming(f(null(), 0, k.as_ptr(), 3, 1, 0, &mut d), "limiter");
        }
        null_naming(
            portcullis_limiter_reset(null(), 0, k.as_ptr(), 3, &mut had),
            "limiter",
        );
        null_naming(
            portcullis_limiter_acquire(null(), 0, k.as_ptr(), 3, 1, &mut d, &mut lease),
            "limiter",
        );
        null_naming(
            portcullis_limiter_acquire_at(null(), 0, k.as_ptr(), 3, 1, 0, &mut d, &mut lease),
            "limiter",
        );
        null_naming(portcullis_limiter_release(null(), null_mut()), "lease");
        null_naming(
            portcullis_limiter_release_at(null(), null_mut(), 0),
            "lease",
        );
        null_naming(
            portcullis_limiter_headers(null(), 0, &d, 1, null_mut()),
            "limiter",
        );
        null_naming(
            portcullis_limiter_stats_json(null(), buf.as_mut_ptr(), 16, &mut n),
            "limiter",
        );
        null_naming(portcullis_limiter_close(null()), "limiter");

        null_naming(portcullis_gate_open(null(), 3, null_mut()), "out_gate");
        null_naming(portcullis_gate_open_file(null(), 3, null_mut()), "out_gate");
        null_naming(portcullis_gate_reload(null(), k.as_ptr(), 3), "gate");
        let mut o: *mut portcullis_outcome = null_mut();
        null_naming(portcullis_gate_decide(null(), null(), &mut o), "gate");
        null_naming(portcullis_gate_decide_at(null(), null(), 0, &mut o), "gate");
        null_naming(
            portcullis_gate_decide_into(null(), null(), null_mut()),
            "gate",
        );
        null_naming(
            portcullis_gate_decide_into_at(null(), null(), 0, null_mut()),
            "gate",
        );
        null_naming(
            portcullis_gate_reset(null(), k.as_ptr(), 3, 0, k.as_ptr(), 3, &mut had),
            "gate",
        );
        null_naming(
            portcullis_gate_stats_json(null(), buf.as_mut_ptr(), 16, &mut n),
            "gate",
        );
        null_naming(portcullis_gate_close(null()), "gate");
        null_naming(portcullis_outcome_new(null_mut()), "out_outcome");
        let mut info = std::mem::MaybeUninit::<portcullis_outcome_info>::uninit();
        null_naming(
            portcullis_outcome_get_info(null(), info.as_mut_ptr()),
            "outcome",
        );
        null_naming(portcullis_outcome_reason(null(), &mut v), "outcome");
        null_naming(portcullis_outcome_limited_by(null(), &mut v), "outcome");
        null_naming(portcullis_outcome_header_count(null(), &mut n), "outcome");
        null_naming(
            portcullis_outcome_header(null(), 0, &mut v, &mut v),
            "outcome",
        );
        null_naming(portcullis_outcome_release(null_mut()), "outcome");

        null_naming(portcullis_cors_open(null(), 3, null_mut()), "out_cors");
        let mut cd: *mut portcullis_cors_decision = null_mut();
        null_naming(portcullis_cors_decide(null(), null(), &mut cd), "cors");
        let mut cinfo = std::mem::MaybeUninit::<portcullis_cors_info>::uninit();
        null_naming(
            portcullis_cors_decision_get_info(null(), cinfo.as_mut_ptr()),
            "decision",
        );
        null_naming(portcullis_cors_decision_reason(null(), &mut v), "decision");
        null_naming(
            portcullis_cors_decision_header_count(null(), &mut n),
            "decision",
        );
        null_naming(
            portcullis_cors_decision_header(null(), 0, &mut v, &mut v),
            "decision",
        );

        null_naming(portcullis_headers_count(null(), &mut n), "headers");
        null_naming(portcullis_headers_get(null(), 0, &mut v, &mut v), "headers");
        // A failed read of the last error keeps the message it could not deliver.
        assert_eq!(portcullis_last_error(null_mut(), 0, null_mut()), NULL);
        assert_eq!(last_error(), "headers is NULL");

        // Every _free accepts NULL.
        portcullis_limiter_free(null_mut());
        portcullis_gate_free(null_mut());
        portcullis_outcome_free(null_mut());
        portcullis_cors_free(null_mut());
        portcullis_cors_decision_free(null_mut());
        portcullis_headers_free(null_mut());
        portcullis_lease_free(null_mut());
    }
}

#[test]
fn live_handles_with_null_outputs_consume_nothing() {
    let mut limiter: *mut portcullis_limiter = null_mut();
    let mut gate: *mut portcullis_gate = null_mut();
    let mut cors: *mut portcullis_cors = null_mut();
    let k = b"key";
    let mut d = portcullis_decision::default();
    // SAFETY: handles are opened here and freed at the end; other pointers are locals or NULL.
    unsafe {
        assert_eq!(
            portcullis_limiter_open(CONFIG.as_ptr(), CONFIG.len(), &mut limiter),
            portcullis_result::Ok
        );
        assert_eq!(
            portcullis_gate_open(CONFIG.as_ptr(), CONFIG.len(), &mut gate),
            portcullis_result::Ok
        );
        assert_eq!(
            portcullis_cors_open(CONFIG.as_ptr(), CONFIG.len(), &mut cors),
            portcullis_result::Ok
        );
        // A check with nowhere to put its decision is refused before it consumes anything.
        for _ in 0..20 {
            null_naming(
                portcullis_limiter_check(limiter, 0, k.as_ptr(), 3, 1, null_mut()),
                "out_decision",
            );
        }
        assert_eq!(
            portcullis_limiter_check(limiter, 0, k.as_ptr(), 3, 1, &mut d),
            portcullis_result::Ok
        );
        assert_eq!((d.allowed, d.remaining), (true, 9), "no quota was taken");
        // Same for leases: a missing out_lease takes none.
        null_naming(
            portcullis_limiter_acquire(limiter, 1, k.as_ptr(), 3, 1, &mut d, null_mut()),
            "out_lease",
        );
        let mut lease: *mut portcullis_lease = null_mut();
        assert_eq!(
            portcullis_limiter_acquire(limiter, 1, k.as_ptr(), 3, 1, &mut d, &mut lease),
            portcullis_result::Ok
        );
        assert!(
            d.allowed && !lease.is_null(),
            "the only lease was still free"
        );
        assert_eq!(
            portcullis_limiter_release(limiter, lease),
            portcullis_result::Ok
        );
        // A NULL key with a length is refused; NULL with length 0 is the empty key.
        null_naming(
            portcullis_limiter_check(limiter, 0, null(), 3, 1, &mut d),
            "key",
        );
        assert_eq!(
            portcullis_limiter_check(limiter, 0, null(), 0, 1, &mut d),
            portcullis_result::Ok
        );

        let none = portcullis_str {
            ptr: null(),
            len: 0,
        };
        let req = portcullis_request {
            method: s("GET"),
            path: s("/x"),
            origin: none,
            request_method: none,
            request_headers: none,
            client_ip: s("203.0.113.9"),
            principal: none,
            tier: none,
            private_network: false,
        };
        for _ in 0..20 {
            null_naming(
                portcullis_gate_decide(gate, &req, null_mut()),
                "out_outcome",
            );
        }
        let mut o: *mut portcullis_outcome = null_mut();
        assert_eq!(
            portcullis_gate_decide(gate, &req, &mut o),
            portcullis_result::Ok
        );
        let mut info = std::mem::MaybeUninit::<portcullis_outcome_info>::uninit();
        assert_eq!(
            portcullis_outcome_get_info(o, info.as_mut_ptr()),
            portcullis_result::Ok
        );
        let info = info.assume_init();
        assert_eq!(info.remaining, 9, "the refused calls took no quota");
        null_naming(
            portcullis_outcome_header(o, 0, null_mut(), null_mut()),
            "out_name",
        );
        null_naming(portcullis_outcome_reason(o, null_mut()), "out_reason");
        portcullis_outcome_free(o);

        let creq = portcullis_cors_request {
            method: s("GET"),
            origin: s("https://app.example.com"),
            request_method: none,
            request_headers: none,
            private_network: false,
        };
        null_naming(
            portcullis_cors_decide(cors, &creq, null_mut()),
            "out_decision",
        );
        let missing_method = portcullis_cors_request {
            method: none,
            ..creq
        };
        let mut cd: *mut portcullis_cors_decision = null_mut();
        null_naming(
            portcullis_cors_decide(cors, &missing_method, &mut cd),
            "request.method",
        );
        assert!(cd.is_null());

        portcullis_cors_free(cors);
        portcullis_gate_free(gate);
        portcullis_limiter_free(limiter);
    }
}
