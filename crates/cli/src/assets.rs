//! Man pages and shell completions, generated from a program's own clap
//! definition so they never drift from `--help`. `scripts/package` asks
//! each binary for them with the hidden first argument [`GENERATE`].

use std::ffi::OsString;
use std::io;
use std::path::Path;

use clap_complete::Shell;

/// `PROGRAM __generate-assets DIR` writes the assets into DIR and exits.
/// Not a clap subcommand, so it shows in no help, page or completion.
pub const GENERATE: &str = "__generate-assets";

/// Call first thing in `main`: when the command line is
/// `PROGRAM __generate-assets DIR`, writes the assets and exits (0, or 1
/// with `error: …`); otherwise returns and nothing happened.
pub fn generate_if_asked(command: impl FnOnce() -> clap::Command) {
    let args: Vec<OsString> = std::env::args_os().collect();
    if args.len() != 3 || args[1] != GENERATE {
        return;
    }
    match write(command(), Path::new(&args[2])) {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("error: writing the man pages and completions: {e}");
            std::process::exit(1)
        }
    }
}

/// Writes `DIR/man/NAME.1` (and `NAME-SUB.1` for each subcommand),
/// `DIR/completions/bash/NAME`, `DIR/completions/zsh/_NAME` and
/// `DIR/completions/fish/NAME.fish`.
pub fn write(command: clap::Command, dir: &Path) -> io::Result<()> {
    let name = command.get_name().to_string();
    let man = dir.join("man");
    std::fs::create_dir_all(&man)?;
    clap_mangen::generate_to(command.clone(), &man)?;
    for (shell, sub, file) in [
        (Shell::Bash, "bash", name.clone()),
        (Shell::Zsh, "zsh", format!("_{name}")),
        (Shell::Fish, "fish", format!("{name}.fish")),
    ] {
        let out = dir.join("completions").join(sub);
        std::fs::create_dir_all(&out)?;
        let mut f = std::fs::File::create(out.join(file))?;
        clap_complete::generate(shell, &mut command.clone(), &name, &mut f);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_pages_for_every_subcommand_and_three_shells() {
        let cmd = clap::Command::new("demo-prog")
            .about("A demo")
            .subcommand(clap::Command::new("serve").about("Serve"))
            .subcommand(clap::Command::new("secret").hide(true));
        let dir = tempfile::tempdir().unwrap();
        write(cmd, dir.path()).unwrap();
        let page = std::fs::read_to_string(dir.path().join("man/demo-prog.1")).unwrap();
        assert!(page.contains(".TH demo-prog 1"), "{page}");
        assert!(dir.path().join("man/demo-prog-serve.1").exists());
        assert!(!dir.path().join("man/demo-prog-secret.1").exists());
        let bash = std::fs::read_to_string(dir.path().join("completions/bash/demo-prog")).unwrap();
        assert!(
            bash.contains("complete -F") && bash.contains("serve"),
            "{bash}"
        );
        assert!(dir.path().join("completions/zsh/_demo-prog").exists());
        assert!(dir.path().join("completions/fish/demo-prog.fish").exists());
    }
}
