//! `portfwd-docs DIR`: writes the man pages (`DIR/man/portfwd.1`, one page per subcommand,
//! `portfwd-share-add.1` and so on) and the shell completions (`DIR/completions/portfwd.bash`,
//! `_portfwd`, `portfwd.fish`) from the command line's definition, so that they never drift
//! from it. `cargo xtask deb` runs it and packs what it writes.

use std::{
    fs,
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap::CommandFactory as _;
use clap_complete::Shell;
use portfwd::args::Cli;

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: portfwd-docs DIR");
        return ExitCode::FAILURE;
    };
    match write_all(&dir) {
        Ok(pages) => {
            println!(
                "portfwd-docs: {pages} man pages and 3 completion scripts in {}",
                dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("portfwd-docs: {err}");
            ExitCode::FAILURE
        }
    }
}

fn write_all(dir: &Path) -> std::io::Result<usize> {
    let man = dir.join("man");
    let completions = dir.join("completions");
    fs::create_dir_all(&man)?;
    fs::create_dir_all(&completions)?;
    let mut command = Cli::command();
    command.build();
    let pages = man_pages(&command, &man)?;
    for (shell, file) in [
        (Shell::Bash, "portfwd.bash"),
        (Shell::Zsh, "_portfwd"),
        (Shell::Fish, "portfwd.fish"),
    ] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "portfwd", &mut out);
        fs::write(completions.join(file), out)?;
    }
    Ok(pages)
}

/// The page of `command` and of each of its subcommands (`portfwd-share-add.1`), recursively;
/// returns how many.
fn man_pages(command: &clap::Command, dir: &Path) -> std::io::Result<usize> {
    let mut out = Vec::new();
    let name = command
        .get_display_name()
        .unwrap_or_else(|| command.get_name())
        .to_owned();
    clap_mangen::Man::new(command.clone())
        .title(name.to_uppercase())
        .section("1")
        .manual("portfwd")
        .source(format!("portfwd {}", env!("CARGO_PKG_VERSION")))
        .render(&mut out)?;
    fs::write(dir.join(format!("{name}.1")), out)?;
    let mut pages = 1;
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        if sub.get_name() == "help" {
            continue;
        }
        pages += man_pages(sub, dir)?;
    }
    Ok(pages)
}
