use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    let cli = redrelay::cli::Cli::parse();
    // The emulator is a crate of its own (target `redrelay_emulator`): its
    // logs keep showing by default under `redrelay emulator`.
    let filter = EnvFilter::try_from_env("REDRELAY_LOG")
        .unwrap_or_else(|_| EnvFilter::new("warn,redrelay=info,redrelay_emulator=info"));
    match cli.log_format {
        redrelay::cli::LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init(),
        redrelay::cli::LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(stop_on_signal(shutdown.clone()));
        redrelay::cli::run(cli, shutdown).await
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", redrelay::ops::error_text(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// SIGINT or SIGTERM: a clean stop (the worker stops receiving and lets
/// in-flight work finish within its grace period).
async fn stop_on_signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("Stop requested.");
    shutdown.cancel();
}
