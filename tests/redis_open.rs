//! The Redis store's settings: bad ones are clear errors when the config is read or the
//! store is opened, never at the first request; a good config runs the gate on Redis.

mod common;

use std::net::TcpListener;
use std::time::Duration;

use portcullis::config::{Config, StoreKind};
use portcullis::store::redis::{OnError, RedisOptions};
use portcullis::store::StoreConfig;
use portcullis::Gate;

fn config_errors(store: &str) -> Vec<(usize, String)> {
    let text = format!("{store}\n[[policy]]\nname = \"api\"\nlimit = \"5/h\"\n");
    Config::parse(&text)
        .expect_err("invalid")
        .errors()
        .iter()
        .map(|e| (e.line(), e.message().to_owned()))
        .collect()
}

fn open_error(o: RedisOptions) -> String {
    StoreConfig::redis(o).expect_err("refused").to_string()
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn local_stores_never_block() {
    let text = "[[policy]]\nname = \"api\"\nlimit = \"5/h\"\n";
    let c = Config::parse(text).unwrap();
    assert!(!c.limiter().unwrap().may_block());
    assert!(!Gate::new(c).unwrap().may_block());
}

#[test]
fn the_config_reads_every_redis_setting() {
    let c = Config::parse(
        "[store]\nkind = \"redis\"\nurl = \"redis://:pw@127.0.0.1:6390/2\"\npool_size = 4\n\
         timeout = \"20ms\"\nkey_prefix = \"myapp:\"\non_error = \"local\"\nexpected_hosts = 3\n\
         deny_cache = false\n[[policy]]\nname = \"api\"\nlimit = \"5/h\"\n",
    )
    .unwrap();
    assert_eq!(c.store.kind, StoreKind::Redis);
    let r = c.store.redis.unwrap();
    assert_eq!(r.url, "redis://:pw@127.0.0.1:6390/2");
    assert_eq!(r.pool_size, 4);
    assert_eq!(r.timeout, Duration::from_millis(20));
    assert_eq!(r.key_prefix, "myapp:");
    assert_eq!(r.on_error, OnError::Local);
    assert_eq!(r.expected_hosts, 3);
    assert!(!r.deny_cache);
}

#[test]
fn bad_settings_name_their_line() {
    let e = config_errors("[store]\nkind = \"redis\"");
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].0, 2);
    assert!(e[0].1.contains("needs a server: add url"), "{e:?}");

    let e = config_errors("[store]\nkind = \"redis\"\nurl = \"http://127.0.0.1:6379\"");
    assert_eq!(e[0].0, 3);
    assert!(e[0].1.contains("is not a Redis URL"), "{e:?}");

    let e = config_errors(
        "[store]\nkind = \"redis\"\nurl = \"redis://127.0.0.1/0\"\nkey_prefix = \"my app:\"",
    );
    assert_eq!(e[0].0, 4);
    assert!(e[0].1.contains("contains a space"), "{e:?}");

    let e = config_errors("[store]\nkind = \"redis\"\nurl = \"redis://h/0\"\non_error = \"open\"");
    assert!(e[0].1.contains("unknown on_error \"open\""), "{e:?}");

    let e = config_errors("[store]\nkind = \"redis\"\nurl = \"redis://h/0\"\nexpected_hosts = 2");
    assert!(e[0].1.contains("on_error = \"local\" only"), "{e:?}");

    let e = config_errors("[store]\nkind = \"redis\"\nurl = \"redis://h/0\"\npath = \"x\"");
    assert!(e[0].1.contains("sled stores only"), "{e:?}");

    let e = config_errors("[store]\nkind = \"memory\"\nurl = \"redis://h/0\"");
    assert!(e[0].1.contains("Redis stores only"), "{e:?}");
}

#[test]
fn opening_refuses_bad_input_clearly() {
    let url = format!("redis://127.0.0.1:{}/0", closed_port());
    let e = open_error(RedisOptions::new(&url));
    assert!(e.contains(&url) && e.contains("cannot connect"), "{e}");

    let e = open_error(RedisOptions::new("redis//nothing"));
    assert!(e.contains("is not a Redis URL"), "{e}");

    let mut o = RedisOptions::new(&url);
    o.key_prefix = "has space".into();
    let e = open_error(o);
    assert!(e.contains("contains a space"), "{e}");

    let e = open_error(RedisOptions::new("rediss://127.0.0.1:6379/0"));
    assert!(e.contains("redis-tls"), "{e}");

    // A password never shows in messages.
    let e = open_error(RedisOptions::new(format!(
        "redis://:hunter2@127.0.0.1:{}/0",
        closed_port()
    )));
    assert!(!e.contains("hunter2") && e.contains("***@"), "{e}");
}

/// The settings' effect on a real server (compiled with `--features redis-server-tests`,
/// which ci/redis.sh gives).
#[cfg(feature = "redis-server-tests")]
mod on_a_server {
    use super::*;
    use common::redis::RedisServer;
    use portcullis::GateRequest;

    #[test]
    fn a_wrong_password_is_refused_at_open() {
        let server = RedisServer::start_with(&["--requirepass", "secret"]);
        let e = open_error(RedisOptions::new(format!(
            "redis://:wrong@127.0.0.1:{}/0",
            server.port
        )));
        assert!(e.contains("cannot connect") && !e.contains("wrong@"), "{e}");
    }

    #[test]
    fn a_gate_runs_on_redis_from_its_config() {
        let server = RedisServer::start();
        let text = format!(
            "[store]\nkind = \"redis\"\nurl = \"{}\"\n[[policy]]\nname = \"api\"\nlimit = \"2/h\"\n\
             [[route]]\nmatch = \"GET /\"\nlimits = [{{ policy = \"api\", key = \"ip\" }}]\n",
            server.url()
        );
        let gate = Gate::new(Config::parse(&text).unwrap()).unwrap();
        // A decision may wait on the network: Node decides off its event loop, nginx refuses.
        assert!(gate.may_block());
        assert!(Config::parse(&text).unwrap().limiter().unwrap().may_block());
        let req = GateRequest::new("GET", "/").ip("203.0.113.9".parse().unwrap());
        let statuses: Vec<_> = (0..3).map(|_| gate.decide(&req).status_code()).collect();
        assert_eq!(statuses, [None, None, Some(429)]);
        // Another gate (another host) sees the same counter.
        let other = Gate::new(Config::parse(&text).unwrap()).unwrap();
        assert_eq!(other.decide(&req).status_code(), Some(429));
        let keys: Vec<Vec<u8>> = redis::cmd("KEYS")
            .arg("portcullis:*")
            .query(&mut server.conn(None))
            .unwrap();
        assert_eq!(keys.len(), 1, "{keys:?}");
        assert!(
            keys[0].starts_with(b"portcullis:api:") && keys[0].ends_with(b"}"),
            "{keys:?}"
        );
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&keys[0])
            .query(&mut server.conn(None))
            .unwrap();
        assert!(ttl > 0, "idle keys expire: {ttl}");
    }

    /// The value of an unlabelled series in a Prometheus text exposition.
    fn series(text: &str, name: &str) -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
            .trim()
            .parse()
            .unwrap()
    }

    #[test]
    fn the_metrics_show_redis_calls_failures_and_whether_it_answers() {
        let mut server = RedisServer::start();
        let text = format!(
            "[store]\nkind = \"redis\"\nurl = \"{}\"\ntimeout = \"100ms\"\non_error = \"fail_open\"\n\
             [[policy]]\nname = \"api\"\nlimit = \"100/h\"\n\
             [[route]]\nmatch = \"GET /\"\nlimits = [{{ policy = \"api\", key = \"ip\" }}]\n",
            server.url()
        );
        let gate = Gate::new(Config::parse(&text).unwrap()).unwrap();
        let req = GateRequest::new("GET", "/").ip("203.0.113.9".parse().unwrap());
        for _ in 0..3 {
            assert_eq!(gate.decide(&req).status_code(), None);
        }
        let up = gate.metrics();
        assert_eq!(series(&up, "portcullis_store_redis_up"), 1);
        assert_eq!(series(&up, "portcullis_store_redis_nodes"), 1);
        assert_eq!(series(&up, "portcullis_store_redis_failures_total"), 0);
        let calls = series(&up, "portcullis_store_redis_calls_total");
        assert!(calls >= 3, "{calls}");

        server.kill();
        assert_eq!(gate.decide(&req).status_code(), None, "fail_open");
        let down = gate.metrics();
        assert_eq!(series(&down, "portcullis_store_redis_up"), 0);
        assert!(series(&down, "portcullis_store_redis_failures_total") >= 1);

        server.restart();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while series(&gate.metrics(), "portcullis_store_redis_up") == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "Redis never came back"
            );
            let _ = gate.decide(&req);
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
