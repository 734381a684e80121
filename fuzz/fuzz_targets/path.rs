//! Fuzzes request targets through the gate: path normalisation and routing on any bytes
//! (lossily decoded, as a server hands over its target). Every target gets a decision; the
//! login route's limit holds for every spelling that resolves to it.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use portcullis::{Action, Gate, GateRequest, ManualClock};

fn gate() -> &'static Gate {
    static G: OnceLock<Gate> = OnceLock::new();
    G.get_or_init(|| {
        let config = r#"
            [[policy]]
            name = "login"
            algorithm = "fixed_window"
            limit = "1000000/m"

            [[route]]
            match = "POST /api/v1/auth/login"
            case_insensitive = true
            limits = [{ policy = "login", key = "ip" }]

            [[route]]
            match = "/api/{id}/things/"
            limits = [{ policy = "login", key = "route" }]
        "#;
        Gate::builder(config.parse().expect("valid config"))
            .clock(ManualClock::new(1_700_000_000_000_000_000))
            .build()
            .expect("gate")
    })
}

fuzz_target!(|data: &[u8]| {
    let target = String::from_utf8_lossy(data);
    let req = GateRequest::new("POST", &target).ip("192.0.2.9".parse().unwrap());
    let o = gate().decide(&req);
    assert!(matches!(o.action(), Action::Pass | Action::Limited));
});
