//! `facelock serve` (and `facelock` alone): the HTTP API until SIGINT or SIGTERM.

use facelock::config::Settings;

use super::CliResult;

#[derive(clap::Args, Default)]
pub struct Args {
    /// Address to listen on (overrides FACELOCK_HOST), e.g. 0.0.0.0 for other machines.
    #[arg(long)]
    host: Option<std::net::IpAddr>,
    /// Port to listen on (overrides FACELOCK_PORT).
    #[arg(long)]
    port: Option<u16>,
}

pub async fn run(mut settings: Settings, args: Args) -> CliResult {
    let listen = &mut settings.server.listen;
    if let Some(host) = args.host {
        listen.set_ip(host);
    }
    if let Some(port) = args.port {
        listen.set_port(port);
    }
    let listen = *listen;
    let state = facelock::build_state(settings).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen} (FACELOCK_HOST/FACELOCK_PORT): {e}"))?;
    let addr = listener.local_addr()?;
    tracing::info!("Face Lock listening on http://{addr} (API docs at http://{addr}/docs)");
    facelock::serve(listener, state, facelock::shutdown_signal()).await?;
    Ok(())
}
