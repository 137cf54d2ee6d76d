//! `deploy/install.sh` (issue 13): staged into a directory, it lays down shoald and shoal,
//! a systemd unit that restarts shoald on failure and orders it after docker.service,
//! bash/zsh/fish completions that load, and man pages that render.

use std::path::Path;
use std::process::Command;

use shoal_tests::bin_dir;

fn installed(root: &Path, path: &str) -> String {
    std::fs::read_to_string(root.join(path.trim_start_matches('/')))
        .unwrap_or_else(|e| panic!("{path} was not installed: {e}"))
}

#[test]
fn install_lays_down_binaries_a_unit_completions_and_man_pages() {
    if !bin_dir().join("shoal").exists() {
        shoal_tests::skipping("shoal is not built (cargo build --workspace --bins)");
        return;
    }
    let stage = tempfile::tempdir().expect("tempdir");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/install.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg("--destdir")
        .arg(stage.path())
        .arg("--bin-dir")
        .arg(bin_dir())
        .output()
        .expect("running install.sh");
    assert!(
        out.status.success(),
        "install.sh failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let root = stage.path();
    for bin in ["shoald", "shoal"] {
        let path = root.join("usr/local/bin").join(bin);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).expect("binary").permissions(),
        );
        assert_eq!(mode & 0o755, 0o755, "{bin} is executable");
    }

    let unit = installed(root, "/etc/systemd/system/shoald.service");
    for line in [
        "After=network-online.target docker.service",
        "Requires=docker.service",
        "ExecStart=/usr/local/bin/shoald",
        "Restart=on-failure",
        "KillMode=process",
        "WantedBy=multi-user.target",
    ] {
        assert!(
            unit.lines().any(|l| l == line),
            "the unit lacks {line:?}:\n{unit}"
        );
    }

    // bash loads the completion and registers it for `shoal`; it offers subcommands.
    let bash = root.join("usr/share/bash-completion/completions/shoal");
    let probe = format!(
        "source {} && complete -p shoal && COMP_WORDS=(shoal serv) COMP_CWORD=1 COMP_LINE='shoal serv' COMP_POINT=10 && _shoal shoal serv shoal && printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        bash.display()
    );
    let loaded = Command::new("bash")
        .arg("-c")
        .arg(&probe)
        .output()
        .expect("bash");
    let text = String::from_utf8_lossy(&loaded.stdout);
    assert!(
        loaded.status.success(),
        "{}",
        String::from_utf8_lossy(&loaded.stderr)
    );
    assert!(text.contains("-F _shoal shoal"), "{text}");
    assert!(
        text.lines().any(|l| l == "service"),
        "completes `serv` to service: {text}"
    );
    assert!(
        installed(root, "/usr/share/zsh/vendor-completions/_shoal").starts_with("#compdef shoal")
    );
    assert!(
        installed(root, "/usr/share/fish/vendor_completions.d/shoal.fish")
            .contains("complete -c shoal")
    );

    // Man pages: shoal(1), one per subcommand, shoald(8); they render.
    let create = installed(root, "/usr/local/share/man/man1/shoal-service-create.1");
    assert!(
        create.contains(".TH shoal-service-create 1"),
        "{}",
        &create[..200.min(create.len())]
    );
    let shoald = installed(root, "/usr/local/share/man/man8/shoald.8");
    assert!(shoald.contains(".TH shoald 8"));
    assert!(
        shoald.contains("docker\\-api"),
        "shoald's page documents its flags"
    );
    if Path::new("/usr/bin/man").exists() {
        let page = root.join("usr/local/share/man/man1/shoal-service-create.1");
        let shown = Command::new("man")
            .arg("-l")
            .arg(&page)
            .env("MANWIDTH", "80")
            .output()
            .expect("man");
        let text = String::from_utf8_lossy(&shown.stdout);
        assert!(text.contains("--replicas"), "{text}");
    }
}
