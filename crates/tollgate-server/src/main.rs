//! The `tollgate` binary: parse the configuration, set up logging, bind, serve until SIGTERM or
//! Ctrl-C, then shut down gracefully. Exit codes: 0 after a clean shutdown, 1 when the grace period
//! ran out or the server failed, 64 on a bad configuration. With a subcommand (`tollgate security
//! export|import`), it runs that tool instead (`security_cli`, `docs/operations.md`).

use std::process::ExitCode;

use clap::Parser;
use tollgate_server::{Cli, Config, Extensions, Server};

const EX_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    if let Some(command) = cli.command.take() {
        return tollgate_server::security_cli::run(command);
    }
    let settings = match Config::load(&cli).and_then(Config::validate) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("tollgate: {error}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    init_logging(&settings.config);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    // 0: tokio's own choice, one worker per core the process may run on (its affinity mask).
    if settings.config.server.worker_threads > 0 {
        builder.worker_threads(settings.config.server.worker_threads);
    }
    let runtime = match builder.build() {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("tollgate: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(settings.listen).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::error!(listen = %settings.listen, %error, "cannot bind");
                return ExitCode::FAILURE;
            }
        };
        let server = match Server::start(listener, settings, Extensions::default()).await {
            Ok(server) => server,
            Err(error) => {
                tracing::error!(%error, "cannot start");
                return ExitCode::FAILURE;
            }
        };
        wait_for_signal().await;
        tracing::info!("shutting down: finishing in-flight requests");
        if server.shutdown().await {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    })
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if config.log.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
