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
        null_naming(
            portcullis_gate_metrics(null(), 0, buf.as_mut_ptr(), 16, &mut n),
            "gate",
        );
        null_naming(portcullis_gate_publish_metrics(null()), "gate");
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
            forwarded_for: none,
            forwarded: none,
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

#[test]
fn every_deciding_function_refuses_a_null_output_before_consuming() {
    type Decide = unsafe extern "C" fn(
        *const portcullis_limiter,
        u32,
        *const u8,
        usize,
        u32,
        *mut portcullis_decision,
    ) -> portcullis_result;
    type DecideAt = unsafe extern "C" fn(
        *const portcullis_limiter,
        u32,
        *const u8,
        usize,
        u32,
        u64,
        *mut portcullis_decision,
    ) -> portcullis_result;
    const NOW: u64 = 1_700_000_000_000_000_000;
    let mut limiter: *mut portcullis_limiter = null_mut();
    let k = b"key";
    let mut d = portcullis_decision::default();
    // SAFETY: the handle is opened here and freed at the end; other pointers are locals or NULL.
    unsafe {
        assert_eq!(
            portcullis_limiter_open(CONFIG.as_ptr(), CONFIG.len(), &mut limiter),
            portcullis_result::Ok
        );
        let now: [Decide; 4] = [
            portcullis_limiter_check,
            portcullis_limiter_peek,
            portcullis_limiter_penalize,
            portcullis_limiter_refund,
        ];
        let at: [DecideAt; 4] = [
            portcullis_limiter_check_at,
            portcullis_limiter_peek_at,
            portcullis_limiter_penalize_at,
            portcullis_limiter_refund_at,
        ];
        for f in now {
            null_naming(f(limiter, 0, k.as_ptr(), 3, 1, null_mut()), "out_decision");
            // The output is checked before the key: both bad names the output.
            null_naming(f(limiter, 0, null(), 3, 1, null_mut()), "out_decision");
            null_naming(f(limiter, 0, null(), 3, 1, &mut d), "key");
        }
        for f in at {
            null_naming(
                f(limiter, 0, k.as_ptr(), 3, 1, NOW, null_mut()),
                "out_decision",
            );
            null_naming(f(limiter, 0, null(), 3, 1, NOW, null_mut()), "out_decision");
            null_naming(f(limiter, 0, null(), 3, 1, NOW, &mut d), "key");
        }
        // The limiter is checked first of all.
        null_naming(
            portcullis_limiter_check_at(null(), 0, null(), 3, 1, NOW, null_mut()),
            "limiter",
        );
        assert_eq!(
            portcullis_limiter_peek_at(limiter, 0, k.as_ptr(), 3, 1, NOW, &mut d),
            portcullis_result::Ok
        );
        assert_eq!(
            (d.allowed, d.remaining),
            (true, 9),
            "nothing was consumed (a peek of 1 is what a check would leave)"
        );
        assert_eq!(d.at_ns, NOW, "the _at twin decides at the time given");

        // acquire checks both outputs, decision first, before the key.
        let mut lease: *mut portcullis_lease = null_mut();
        null_naming(
            portcullis_limiter_acquire_at(limiter, 1, null(), 3, 1, NOW, null_mut(), &mut lease),
            "out_decision",
        );
        null_naming(
            portcullis_limiter_acquire_at(limiter, 1, null(), 3, 1, NOW, &mut d, null_mut()),
            "out_lease",
        );
        null_naming(
            portcullis_limiter_acquire_at(limiter, 1, null(), 3, 1, NOW, &mut d, &mut lease),
            "key",
        );
        assert_eq!(
            portcullis_limiter_acquire_at(limiter, 1, k.as_ptr(), 3, 1, NOW, &mut d, &mut lease),
            portcullis_result::Ok
        );
        assert!(d.allowed && !lease.is_null(), "no lease was taken before");
        // A release with a NULL limiter still takes the lease back (and frees it).
        null_naming(portcullis_limiter_release_at(null(), lease, NOW), "limiter");
        portcullis_limiter_free(limiter);
    }
}

#[test]
fn buffers_lists_and_closed_handles() {
    let mut limiter: *mut portcullis_limiter = null_mut();
    let mut gate: *mut portcullis_gate = null_mut();
    let mut len = 0usize;
    let mut buf = [0u8; 4];
    let d = portcullis_decision::default();
    let mut h: *mut portcullis_headers = null_mut();
    // SAFETY: handles are opened here and freed at the end; other pointers are locals or NULL
    // (the oversized count is refused before anything is read: that is what is tested).
    unsafe {
        assert_eq!(
            portcullis_limiter_open(CONFIG.as_ptr(), CONFIG.len(), &mut limiter),
            portcullis_result::Ok
        );
        assert_eq!(
            portcullis_gate_open(CONFIG.as_ptr(), CONFIG.len(), &mut gate),
            portcullis_result::Ok
        );
        // Stats: out_len is required; a short buffer gets the size and nothing else.
        null_naming(
            portcullis_limiter_stats_json(limiter, buf.as_mut_ptr(), buf.len(), null_mut()),
            "out_len",
        );
        assert_eq!(
            portcullis_gate_stats_json(gate, buf.as_mut_ptr(), buf.len(), &mut len),
            portcullis_result::InsufficientSize
        );
        assert!(len > buf.len());
        null_naming(
            portcullis_limiter_stats_json(limiter, null_mut(), 1 << 20, &mut len),
            "buf",
        );
        // Metrics: the same contract, and a format that is not one of the enum's is refused.
        assert_eq!(
            portcullis_gate_metrics(gate, 0, buf.as_mut_ptr(), buf.len(), &mut len),
            portcullis_result::InsufficientSize
        );
        assert!(len > buf.len());
        let mut text = vec![0u8; len + 4096];
        for format in [0, 1] {
            assert_eq!(
                portcullis_gate_metrics(gate, format, text.as_mut_ptr(), text.len(), &mut len),
                portcullis_result::Ok
            );
            let body = std::str::from_utf8(&text[..len]).unwrap();
            assert!(body.starts_with("# HELP portcullis_decisions"), "{body}");
            assert_eq!(body.ends_with("# EOF\n"), format == 1);
        }
        assert_eq!(
            portcullis_gate_metrics(gate, 2, text.as_mut_ptr(), text.len(), &mut len),
            portcullis_result::InvalidParameter
        );
        null_naming(
            portcullis_gate_metrics(gate, 0, text.as_mut_ptr(), text.len(), null_mut()),
            "out_len",
        );
        assert_eq!(portcullis_gate_publish_metrics(gate), portcullis_result::Ok);

        // Header lists: NULL decisions only with a count of 0; a count no memory can hold is
        // refused; the output is checked before the style and the list.
        null_naming(
            portcullis_limiter_headers(limiter, 9, &d, 1, null_mut()),
            "out_headers",
        );
        null_naming(
            portcullis_limiter_headers(limiter, 0, null(), 1, &mut h),
            "decisions",
        );
        assert_eq!(
            portcullis_limiter_headers(limiter, 0, &d, usize::MAX, &mut h),
            portcullis_result::InvalidParameter
        );
        assert!(h.is_null());
        assert_eq!(
            portcullis_limiter_headers(limiter, 0, null(), 0, &mut h),
            portcullis_result::Ok
        );
        let mut n = 7usize;
        assert_eq!(portcullis_headers_count(h, &mut n), portcullis_result::Ok);
        assert_eq!(n, 0);
        let mut v = s("");
        null_naming(
            portcullis_headers_get(h, 0, &mut v, null_mut()),
            "out_value",
        );
        assert_eq!(
            portcullis_headers_get(h, 0, &mut v, &mut v),
            portcullis_result::OutOfRange
        );
        portcullis_headers_free(h);

        // The gate reads a request's text only once the output is known good.
        let none = portcullis_str {
            ptr: null(),
            len: 0,
        };
        let no_method = portcullis_request {
            method: none,
            path: s("/x"),
            origin: none,
            request_method: none,
            request_headers: none,
            client_ip: none,
            principal: none,
            tier: none,
            private_network: false,
            forwarded_for: none,
            forwarded: none,
        };
        null_naming(
            portcullis_gate_decide_at(gate, &no_method, 0, null_mut()),
            "out_outcome",
        );
        let mut o: *mut portcullis_outcome = null_mut();
        null_naming(
            portcullis_gate_decide_at(gate, &no_method, 0, &mut o),
            "request.method",
        );
        assert_eq!(portcullis_outcome_new(&mut o), portcullis_result::Ok);
        null_naming(
            portcullis_gate_decide_into_at(gate, &no_method, 0, o),
            "request.method",
        );
        portcullis_outcome_free(o);

        // Closed handles refuse everything but _free, _close included.
        assert_eq!(portcullis_limiter_close(limiter), portcullis_result::Ok);
        assert_eq!(portcullis_gate_close(gate), portcullis_result::Ok);
        let mut dd = portcullis_decision::default();
        assert_eq!(
            portcullis_limiter_check(limiter, 0, b"k".as_ptr(), 1, 1, &mut dd),
            portcullis_result::Closed
        );
        assert!(last_error().contains("portcullis_limiter_free"));
        assert_eq!(portcullis_limiter_close(limiter), portcullis_result::Closed);
        assert_eq!(
            portcullis_gate_decide(gate, &no_method, &mut o),
            portcullis_result::Closed
        );
        assert!(last_error().contains("portcullis_gate_free"));
        assert_eq!(portcullis_gate_close(gate), portcullis_result::Closed);
        portcullis_gate_free(gate);
        portcullis_limiter_free(limiter);
    }
}

/// The argument the pointer macros of `src/ffi/boundary.rs` rest on (its module docs, rules 1
/// and 2), checked on the source: every `try_*!`, `opt_out!` and `take_box!` is invoked in an
/// exported `unsafe extern "C" fn`, on one of its raw-pointer parameters, whose `# Safety`
/// section names it (directly or through the function it says it is `As`); every raw-pointer
/// parameter of an export goes through one of them; and no export holds an `unsafe` block of
/// its own.
#[test]
fn pointer_macros_take_documented_parameters() {
    const MACROS: [&str; 9] = [
        "try_ref",
        "try_mut",
        "try_out",
        "opt_out",
        "try_slice",
        "try_str",
        "try_buf",
        "try_fields",
        "take_box",
    ];

    struct Export {
        at: String,
        params: Vec<(String, String)>,
        safety: String,
        body: Vec<String>,
    }

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/ffi");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("src/ffi")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    files.sort();
    let mut exports: Vec<(String, Export)> = Vec::new();
    let mut stray = Vec::new();
    for path in &files {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(path).expect("readable");
        let lines: Vec<&str> = text.lines().collect();
        let mut docs: Vec<&str> = Vec::new();
        let mut i = 0;
        while i < lines.len() {
            let line = lines[i];
            if let Some(doc) = line.strip_prefix("///") {
                docs.push(doc.trim());
                i += 1;
                continue;
            }
            if line.starts_with("#[") {
                i += 1;
                continue;
            }
            if let Some(rest) = line.strip_prefix("pub unsafe extern \"C\" fn ") {
                let name = rest.split('(').next().unwrap().to_string();
                let mut signature = String::new();
                while !lines[i].trim_end().ends_with('{') {
                    signature.push_str(lines[i]);
                    i += 1;
                }
                signature.push_str(lines[i]);
                let inner =
                    &signature[signature.find('(').unwrap() + 1..signature.rfind(')').unwrap()];
                let params = inner
                    .split(',')
                    .filter_map(|p| p.split_once(':'))
                    .map(|(n, t)| (n.trim().to_string(), t.trim().to_string()))
                    .collect();
                let safety = match docs.iter().position(|d| *d == "# Safety") {
                    Some(at) => docs[at + 1..].join(" "),
                    None => String::new(),
                };
                let mut body = Vec::new();
                i += 1;
                while lines[i] != "}" {
                    body.push(lines[i].to_string());
                    i += 1;
                }
                let at = format!("{file}: {name}");
                exports.push((
                    name,
                    Export {
                        at,
                        params,
                        safety,
                        body,
                    },
                ));
            } else if !line.trim_start().starts_with("//") && file != "boundary.rs" {
                // Outside an export, no macro may appear (boundary.rs defines them).
                for m in MACROS {
                    if line.contains(&format!("{m}!(")) {
                        stray.push(format!("{file}:{}: {m}! outside an export", i + 1));
                    }
                }
            }
            docs.clear();
            i += 1;
        }
    }
    assert!(stray.is_empty(), "{stray:#?}");
    assert!(exports.len() > 50, "parsed {} exports", exports.len());

    // `# Safety` text, following `As `other``.
    let safety_of = |name: &str| -> String {
        let mut text = String::new();
        let mut next = Some(name.to_string());
        while let Some(name) = next.take() {
            let (_, e) = exports
                .iter()
                .find(|(n, _)| *n == name)
                .expect("known export");
            text.push_str(&e.safety);
            text.push(' ');
            if let Some(rest) = e.safety.strip_prefix("As `") {
                next = Some(rest.split('`').next().unwrap().to_string());
            }
        }
        text
    };

    let mut problems = Vec::new();
    let mut uses = 0;
    for (name, e) in &exports {
        let safety = safety_of(name);
        let mut checked = Vec::new();
        for line in e.body.iter().filter(|l| !l.trim_start().starts_with("//")) {
            if line.contains("unsafe") {
                problems.push(format!("{}: an `unsafe` of its own: {}", e.at, line.trim()));
            }
            for m in MACROS {
                let call = format!("{m}!(");
                for (at, _) in line.match_indices(&call) {
                    uses += 1;
                    let args = &line[at + call.len()..];
                    let args = &args[..args.find(')').unwrap()];
                    let mut args = args.split(',').map(str::trim);
                    let p = args.next().unwrap();
                    match e.params.iter().find(|(n, _)| n == p) {
                        Some((_, t)) if t.starts_with('*') => {}
                        _ => problems.push(format!("{}: {m}!({p}): not a pointer parameter", e.at)),
                    }
                    for len in args {
                        if !e.params.iter().any(|(n, _)| n == len) {
                            problems.push(format!("{}: {m}!: {len} is not a parameter", e.at));
                        }
                    }
                    if !safety.contains(&format!("`{p}`")) {
                        problems.push(format!("{}: `# Safety` does not name `{p}`", e.at));
                    }
                    checked.push(p.to_string());
                }
            }
        }
        for (p, t) in &e.params {
            if t.starts_with('*') && !checked.contains(p) {
                problems.push(format!("{}: pointer `{p}` goes through no macro", e.at));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(uses > 100, "found {uses} macro uses");
}
