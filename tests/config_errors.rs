//! Every class of config error: its message, line and column; all reported at once.

use portcullis::config::{Config, ConfigErrors, KeyKind, PolicySelect, StoreKind};

fn errors(text: &str) -> ConfigErrors {
    Config::parse(text).expect_err("the config is invalid")
}

/// (line, column, start of the message) of every error.
fn places(text: &str) -> Vec<(usize, usize, String)> {
    errors(text)
        .errors()
        .iter()
        .map(|e| (e.line(), e.column(), e.message().to_owned()))
        .collect()
}

fn one(text: &str) -> (usize, usize, String) {
    let mut all = places(text);
    assert_eq!(all.len(), 1, "{all:?}");
    all.remove(0)
}

#[test]
fn a_valid_config_parses_into_its_parts() {
    let c = Config::parse(include_str!("../examples/portcullis.toml")).unwrap();
    assert_eq!(c.store.kind, StoreKind::Sled);
    assert_eq!(c.store.capacity, 100_000);
    assert_eq!(c.policies.len(), 6);
    assert_eq!(
        c.policy("login").unwrap().policy.block_duration().as_secs(),
        900
    );
    assert_eq!(c.routes[2].limits[1].key, KeyKind::Ip);
    assert!(c.routes[2].limits[1].shadow);
    assert!(
        matches!(&c.routes[2].limits[0].select, PolicySelect::Tiers { default, .. } if default == "free")
    );
    assert!(c.cors.is_some());
}

#[test]
fn syntax_errors_name_their_place() {
    let (line, col, msg) = one("[[policy]]\nname = \"a\"\nlimit = \"1/s\n");
    assert_eq!((line, col), (3, 13));
    assert!(msg.contains("invalid basic string"), "{msg}");
}

#[test]
fn unknown_keys_are_errors_that_list_the_right_ones() {
    let (line, col, msg) = one("[[policy]]\nname = \"a\"\nlimit = \"1/s\"\nburts = 3\n");
    assert_eq!((line, col), (4, 1));
    assert!(
        msg.starts_with("unknown field `burts`, expected one of"),
        "{msg}"
    );
    assert!(msg.contains("`burst`") && msg.ends_with("remove it or fix its spelling"));
    let (line, _, msg) = one("header_stlye = \"ietf\"\n");
    assert_eq!(line, 1);
    assert!(msg.contains("`header_style`"), "{msg}");
}

#[test]
fn bad_quotas_durations_and_names_are_all_reported_at_once() {
    let text = r#"
[[policy]]
name = "a"
limit = "100 per hour"

[[policy]]
name = "b"
limit = "5/15m"
block = "15 minutes please"

[[policy]]
name = "has space"
limit = "1/s"

[[policy]]
name = "c"
limit = "0/s"
"#;
    let all = places(text);
    assert_eq!(all.len(), 4, "{all:?}");
    assert_eq!((all[0].0, all[0].1), (4, 9));
    assert!(
        all[0]
            .2
            .contains("invalid quota \"100 per hour\": write COUNT/WINDOW"),
        "{}",
        all[0].2
    );
    assert_eq!((all[1].0, all[1].1), (9, 9));
    assert!(
        all[1].2.starts_with("block: invalid duration"),
        "{}",
        all[1].2
    );
    assert_eq!((all[2].0, all[2].1), (12, 8));
    assert!(all[2].2.contains("invalid policy name"), "{}", all[2].2);
    assert_eq!(all[3].0, 17);
    assert!(all[3].2.contains("at least 1"), "{}", all[3].2);
}

#[test]
fn unknown_algorithms_and_enums_suggest_the_closest() {
    let (line, col, msg) =
        one("[[policy]]\nname = \"a\"\nlimit = \"1/s\"\nalgorithm = \"fixed-window\"\n");
    assert_eq!((line, col), (4, 13));
    assert!(
        msg.starts_with("unknown algorithm \"fixed-window\": did you mean \"fixed_window\"?"),
        "{msg}"
    );
    let (_, _, msg) = one("header_style = \"ietff\"\n");
    assert!(msg.contains("did you mean \"ietf\""), "{msg}");
    let (_, _, msg) = one("[store]\nkind = \"postgres\"\n");
    assert!(
        msg.contains("write one of \"memory\", \"sled\", \"shared\", \"redis\""),
        "{msg}"
    );
}

#[test]
fn options_that_do_not_fit_the_algorithm_are_refused() {
    let (line, _, msg) = one("[[policy]]\nname = \"a\"\nlimit = \"1/s\"\nmax_delay = \"1s\"\n");
    assert_eq!(line, 4);
    assert!(
        msg.starts_with("max_delay applies to leaky_bucket policies only"),
        "{msg}"
    );
    let (line, _, msg) =
        one("[[policy]]\nname = \"w\"\nalgorithm = \"fixed_window\"\nlimit = \"5/m\"\nburst = 2\n");
    assert_eq!(line, 5);
    assert!(msg.contains("has no burst"), "{msg}");
    let (line, col, msg) =
        one("[[policy]]\nname = \"x\"\nalgorithm = \"concurrency\"\nlimit = \"4/s\"\n");
    assert_eq!((line, col), (4, 9));
    assert!(msg.contains("write e.g. limit = 4"), "{msg}");
}

#[test]
fn duplicate_policies_and_routes_point_at_the_first() {
    let text =
        "[[policy]]\nname = \"a\"\nlimit = \"1/s\"\n[[policy]]\nname = \"a\"\nlimit = \"2/s\"\n\
                [[route]]\nmatch = \"/x\"\n[[route]]\nmatch = \"/x\"\n";
    let all = places(text);
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!((all[0].0, all[0].1), (5, 8));
    assert!(
        all[0].2.contains("already defined on line 2"),
        "{}",
        all[0].2
    );
    assert_eq!((all[1].0, all[1].1), (10, 9));
    assert!(
        all[1].2.contains("already defined on line 8"),
        "{}",
        all[1].2
    );
}

#[test]
fn unknown_policies_in_routes_suggest_a_name() {
    let text = "[[policy]]\nname = \"login\"\nlimit = \"5/15m\"\n[[route]]\nmatch = \"/login\"\n\
                limits = [{ policy = \"logni\", key = \"ip\" }, { policy = \"zzz\", key = \"nope\" }]\n";
    let all = places(text);
    assert_eq!(all.len(), 3, "{all:?}");
    assert_eq!((all[0].0, all[0].1), (6, 22));
    assert_eq!(
        all[0].2,
        "unknown policy \"logni\": did you mean \"login\"?"
    );
    assert_eq!(all[1].2, "unknown policy \"zzz\": defined policies: login");
    assert!(all[2].2.starts_with("unknown key \"nope\""), "{}", all[2].2);
}

#[test]
fn tiers_need_a_default_that_is_one_of_them() {
    let base = "[[policy]]\nname = \"f\"\nlimit = \"1/s\"\n[[route]]\nmatch = \"/a/\"\n";
    let (line, col, msg) = one(&format!(
        "{base}limits = [{{ tiers = {{ free = \"f\" }}, key = \"principal\" }}]\n"
    ));
    assert_eq!((line, col), (6, 21));
    assert!(msg.contains("add default_tier = \"free\""), "{msg}");
    let (_, _, msg) = one(&format!(
        "{base}limits = [{{ tiers = {{ free = \"f\" }}, default_tier = \"gold\", key = \"principal\" }}]\n"
    ));
    assert!(
        msg.contains("default_tier \"gold\" is not one of the tiers"),
        "{msg}"
    );
}

#[test]
fn bad_route_patterns_say_what_to_write() {
    let cases = [
        (
            "post /login",
            "must be upper case, as clients send it: write \"POST\"",
        ),
        ("api/v1", "has no path"),
        ("GET api/v1", "must start with '/'"),
        ("/api/*", "end the path with '/'"),
        ("/users/{id", "is not a parameter"),
        ("/a//b", "empty segment"),
    ];
    for (pattern, want) in cases {
        let (line, col, msg) = one(&format!("\n[[route]]\nmatch = \"{pattern}\"\n"));
        assert_eq!((line, col), (3, 9), "{pattern}");
        assert!(msg.contains(want), "{pattern}: {msg}");
    }
}

#[test]
fn cors_errors_point_at_the_offending_value() {
    let text = r#"
[cors]
allowed_origins = ["https://app.example.com", "https://app.example.com/", "*"]
allow_credentials = true
allowed_methods = ["delete"]
max_age = "2d"
"#;
    let all = places(text);
    assert!(all.len() >= 5, "{all:?}");
    let find = |needle: &str| {
        all.iter()
            .find(|e| e.2.contains(needle))
            .unwrap_or_else(|| panic!("no {needle} in {all:?}"))
    };
    let slash = find("trailing");
    assert_eq!((slash.0, slash.1), (3, 47));
    assert!(slash.2.starts_with("cors.allowed_origins:"));
    let creds = find("credentials cannot go with `*`");
    assert_eq!(creds.0, 3, "points at the `*` origin");
    assert!(creds.2.contains("allow_credentials = false"), "{}", creds.2);
    let method = find("`delete`");
    assert_eq!((method.0, method.1), (5, 20));
    assert!(method.2.contains("DELETE"));
    let age = find("86400");
    assert_eq!((age.0, age.1), (6, 11));
}

#[test]
fn store_settings_are_checked() {
    let all = places("[store]\nkind = \"sled\"\ncapacity = 2\nflush_interval = \"0s\"\n");
    assert_eq!(all.len(), 3, "{all:?}");
    assert!(all[0].2.contains("needs a folder"), "{}", all[0].2);
    assert_eq!(all[1].0, 3);
    assert!(all[1].2.contains("between 4 and"), "{}", all[1].2);
    assert_eq!(all[2].0, 4);
    let (line, _, msg) = one("[store]\nkind = \"memory\"\npath = \"x\"\n");
    assert_eq!(line, 3);
    assert!(msg.contains("sled stores only"), "{msg}");
}

#[test]
fn errors_display_file_line_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "[[policy]]\nname = \"a\"\nlimit = \"x\"\n").unwrap();
    let e = Config::load(&path).unwrap_err();
    assert_eq!(e.source(), Some(path.display().to_string().as_str()));
    assert!(e.to_string().starts_with(&format!(
        "{}:3:9: policy \"a\": invalid quota",
        path.display()
    )));
    let missing = Config::load(dir.path().join("none.toml")).unwrap_err();
    assert_eq!(missing.errors()[0].line(), 0);
    assert!(missing.to_string().starts_with("cannot read config file"));
}

#[test]
fn every_problem_of_one_policy_is_reported_at_once() {
    let text = r#"[[policy]]
name = "has space"
limit = "100/fortnight"
burst = 0
block = "soon"
durability = "eventually"
capacity = 2
"#;
    let all = places(text);
    let lines: Vec<usize> = all.iter().map(|e| e.0).collect();
    assert_eq!(lines, [2, 3, 4, 5, 6, 7], "{all:?}");
    assert!(all[0].2.contains("invalid policy name"), "{}", all[0].2);
    assert!(all[1].2.contains("invalid quota"), "{}", all[1].2);
    assert!(
        all[2].2.starts_with("burst must be between 1"),
        "{}",
        all[2].2
    );
    assert!(
        all[3].2.starts_with("block: invalid duration"),
        "{}",
        all[3].2
    );
    assert!(all[4].2.starts_with("unknown durability"), "{}", all[4].2);
    assert!(all[5].2.contains("between 4 and"), "{}", all[5].2);

    // An unknown algorithm hides nothing that does not depend on it.
    let all = places(
        "[[policy]]\nname = \"b\"\nalgorithm = \"token_bucket\"\nlimit = \"5 a minute\"\nmax_delay = \"later\"\n",
    );
    let lines: Vec<usize> = all.iter().map(|e| e.0).collect();
    assert_eq!(lines, [3, 4, 5], "{all:?}");

    // What the algorithm cannot represent is refused under the name as written.
    let all = places(
        "[[policy]]\nname = \"bad name\"\nalgorithm = \"fixed_window\"\nlimit = \"5/m\"\nburst = 2\nblock = \"later\"\n",
    );
    let lines: Vec<usize> = all.iter().map(|e| e.0).collect();
    assert_eq!(lines, [2, 5, 6], "{all:?}");
    assert!(
        all[1]
            .2
            .starts_with("policy \"bad name\": fixed_window has no burst"),
        "{}",
        all[1].2
    );
}

#[test]
fn hints_list_only_the_policies_that_can_be_used() {
    let text = "[[policy]]\nname = \"login\"\nlimit = \"5/15m\"\n\
                [[policy]]\nname = \"bad name\"\nlimit = \"1/s\"\n\
                [[route]]\nmatch = \"/x\"\n\
                limits = [{ policy = \"zzz\", key = \"ip\" }, { policy = \"bad name\", key = \"ip\" }, { policy = \"bad nam\", key = \"ip\" }]\n";
    let all = places(text);
    assert_eq!(all.len(), 3, "{all:?}");
    assert!(all[0].2.contains("invalid policy name"), "{}", all[0].2);
    assert_eq!(all[1].2, "unknown policy \"zzz\": defined policies: login");
    assert_eq!(
        all[2].2,
        "unknown policy \"bad nam\": defined policies: login"
    );
}
