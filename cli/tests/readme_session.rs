//! The README's curl session, run as written against a real `portcullis serve`: each `$`
//! line runs in `sh` (the demo's address put in for `localhost:8080`), and each line shown
//! under it must appear in its output, in order. `...` stands for any lines, or, inside a
//! line, any text; a `#` comment after two spaces is not output; header names match whatever
//! their case.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The console block after "With the demo running": (command, expected lines).
fn session() -> Vec<(String, Vec<String>)> {
    let readme = std::fs::read_to_string(format!("{ROOT}/README.md")).unwrap();
    let start = readme
        .find("With the demo running")
        .expect("the session's heading");
    let block = &readme[start..];
    let block = &block[block.find("```console\n").expect("a console block") + 11..];
    let block = &block[..block.find("```").expect("the block's end")];
    let mut steps: Vec<(String, Vec<String>)> = Vec::new();
    for line in block.lines() {
        if let Some(cmd) = line.strip_prefix("$ ") {
            steps.push((cmd.to_owned(), Vec::new()));
        } else if let Some((_, expected)) = steps.last_mut() {
            let text = line.split("  #").next().unwrap_or(line).trim_end();
            expected.push(text.to_owned());
        }
    }
    steps
}

/// Whether `actual` matches `pattern`, `...` matching any text.
fn matches(pattern: &str, actual: &str) -> bool {
    let (pattern, actual) = (pattern.to_ascii_lowercase(), actual.to_ascii_lowercase());
    let mut parts = pattern.split("...");
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = actual.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    for (i, part) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.is_empty()
}

#[test]
fn the_readme_curl_session_works_as_written() {
    if Command::new("curl").arg("--version").output().is_err() {
        panic!("this test runs the README's curl commands: install curl");
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .current_dir(ROOT)
        .args([
            "serve",
            "--config",
            "examples/portcullis.toml",
            "--listen",
            "127.0.0.1:0",
            "--data",
        ])
        .arg(dir.path().join("data"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let _server = Server(child);
    let addr = line.trim().rsplit("http://").next().unwrap().to_owned();

    let steps = session();
    assert!(steps.len() >= 5, "the session was not found: {steps:?}");
    for (cmd, expected) in steps {
        let cmd = cmd.replace("localhost:8080", &addr);
        let out = Command::new("sh").arg("-c").arg(&cmd).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).replace('\r', "");
        let lines: Vec<&str> = text.lines().collect();
        let mut at = 0;
        for want in expected.iter().filter(|w| *w != "...") {
            match lines[at..].iter().position(|l| matches(want, l.trim_end())) {
                Some(i) => at += i + 1,
                None => panic!("`{cmd}`: no line like {want:?} in order in:\n{text}"),
            }
        }
    }
}

#[test]
fn the_pattern_matcher_can_fail() {
    assert!(matches("200 200 ... 200 429", "200 200 200 200 429"));
    assert!(!matches("200 200 ... 200 429", "200 200 200 200 200"));
    assert!(matches(
        "X-RateLimit-Remaining: 19",
        "x-ratelimit-remaining: 19"
    ));
    assert!(!matches("retry-after: 36", "retry-after: 360"));
}
