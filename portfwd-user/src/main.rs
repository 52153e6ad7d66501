//! The `portfwd` command.

use std::{path::Path, process::ExitCode};

use clap::Parser as _;
use portfwd::{
    args::{Cli, Command, DownArgs, RunArgs},
    cli,
    config::{Config, Overrides},
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (command, connection) = match cli.command {
        // The daemon's log level may come from its config file: it sets up the log itself.
        Command::Run(args) => return run(args),
        Command::CheckConfig { file } => return check_config(&file),
        Command::Down(args) => return down(args),
        Command::Share {
            command,
            connection,
        } => (cli::Command::Share(command), connection),
        Command::Device {
            command,
            connection,
        } => (cli::Command::Device(command), connection),
        Command::Events { args, connection } => (cli::Command::Events(args), connection),
        Command::Status { connection } => (cli::Command::Status, connection),
        Command::Settings {
            command,
            connection,
        } => (cli::Command::Settings(command), connection),
        Command::ExposedHost {
            command,
            connection,
        } => (cli::Command::ExposedHost(command), connection),
    };
    portfwd::logging::init(None);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => return fail(&err),
    };
    match runtime.block_on(cli::run(command, &connection)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&err),
    }
}

fn run(args: RunArgs) -> ExitCode {
    let flag_shares = args.shares.clone();
    let config = match Config::load(Overrides {
        wan: args.wan,
        lan: args.lan,
        xdp_mode: args.xdp_mode,
        shares: args.shares,
        file: args.config,
        state_dir: args.state_dir,
        upnp_port: args.upnp_port,
        api: args.api,
        instance: args.instance,
        bpffs: args.bpffs,
    }) {
        Ok(config) => config,
        Err(err) => return fail(&err),
    };
    let log = portfwd::logging::init_daemon(config.log_level.as_deref());
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => return fail(&err),
    };
    let result = runtime.block_on(portfwd::daemon::run(config, flag_shares));
    drop(runtime);
    // The log's last lines before the error below.
    drop(log);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&err),
    }
}

/// `portfwd down`: the stopped daemon's programs detached, its pins removed.
fn down(args: DownArgs) -> ExitCode {
    let config = match Config::load(Overrides {
        wan: args.wan,
        lan: args.lan,
        file: args.config,
        instance: args.instance,
        bpffs: args.bpffs,
        ..Overrides::default()
    }) {
        Ok(config) => config,
        Err(err) => return fail(&err),
    };
    match portfwd::daemon::down(&config.bpffs, &config.wan, config.instance.as_deref()) {
        Ok((dir, true)) => {
            println!(
                "detached portfwd from {} and {} and removed {}",
                config.wan,
                config.lan,
                dir.display()
            );
            ExitCode::SUCCESS
        }
        Ok((dir, false)) => {
            println!(
                "nothing pinned at {}: portfwd was not left running",
                dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(err) => fail(&err),
    }
}

/// `portfwd check-config FILE`: the file alone (no flags, no interfaces, no privileges), as
/// the service would start with it.
fn check_config(file: &Path) -> ExitCode {
    match Config::load(Overrides {
        file: Some(file.to_owned()),
        ..Overrides::default()
    }) {
        Ok(config) => {
            println!("{}: valid", file.display());
            print!("{}", portfwd::config::summary(&config));
            ExitCode::SUCCESS
        }
        Err(err) => fail(&err),
    }
}

fn fail(err: &(dyn std::error::Error + 'static)) -> ExitCode {
    eprintln!("portfwd: {}", portfwd::error_chain(err));
    ExitCode::FAILURE
}
