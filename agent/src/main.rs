//! shoald: Shoal's node daemon. Serves the local socket, and once the node is in a swarm,
//! runs its agent (and its manager, on manager nodes).

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use shoal_agent::daemon::{Daemon, DaemonConfig};
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;

#[derive(Parser, Debug)]
#[command(name = "shoald", version, about = "Shoal's node daemon")]
struct Args {
    /// Where the node keeps its state (Raft log, task database, identity).
    #[arg(long, default_value = "/var/lib/shoal", env = "SHOALD_DATA_DIR")]
    data_dir: PathBuf,
    /// The unix socket the `shoal` CLI talks to.
    #[arg(long, default_value = "/run/shoal/shoald.sock", env = "SHOALD_SOCKET")]
    socket: PathBuf,
    /// The Docker Engine that runs this node's containers.
    #[arg(
        long,
        default_value = "unix:///var/run/docker.sock",
        env = "SHOALD_DOCKER_HOST"
    )]
    docker_host: String,
    /// This node's name in the swarm (default: the hostname).
    #[arg(long, env = "SHOALD_NODE_NAME")]
    node_name: Option<String>,
    /// Where the Docker Engine finds network plugins: shoald serves its network driver here.
    #[arg(long, default_value = "/run/docker/plugins", env = "SHOALD_PLUGIN_DIR")]
    plugin_dir: PathBuf,
    /// Where tasks' secrets and configs are written (shoald mounts a tmpfs there: they are
    /// never on a disk).
    #[arg(long, default_value = "/run/shoal/files", env = "SHOALD_FILES_DIR")]
    files_dir: PathBuf,
    /// Where Docker's Engine API for swarm objects is served (`docker`, `docker stack
    /// deploy` and Swarm's tools work against it): unix:///PATH, tcp://IP:PORT (with
    /// mutual TLS: the three --docker-api-tls* files), or `none`. Default: beside
    /// --socket, `docker-api.sock` (/run/shoal/docker-api.sock).
    #[arg(long, env = "SHOALD_DOCKER_API")]
    docker_api: Option<String>,
    /// TCP --docker-api: the CA clients' certificates must chain to (PEM; dockerd's
    /// --tlscacert). `docker` then needs DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH.
    #[arg(long, env = "SHOALD_DOCKER_API_TLSCACERT")]
    docker_api_tlscacert: Option<PathBuf>,
    /// TCP --docker-api: the server's certificate (PEM; dockerd's --tlscert).
    #[arg(long, env = "SHOALD_DOCKER_API_TLSCERT")]
    docker_api_tlscert: Option<PathBuf>,
    /// TCP --docker-api: the server's private key (PEM; dockerd's --tlskey).
    #[arg(long, env = "SHOALD_DOCKER_API_TLSKEY")]
    docker_api_tlskey: Option<PathBuf>,
    /// Where Prometheus scrapes this node's metrics (`GET /metrics`, plain HTTP), as
    /// HOST:PORT; Docker's usual port is 9323. Off unless given.
    #[arg(long, env = "SHOALD_METRICS_ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
    /// Where the live web view is served (plain HTTP, as HOST:PORT; managers only, off
    /// unless given). Whoever opens it needs the link `shoal web` prints: put it on an
    /// address only operators reach.
    #[arg(long, env = "SHOALD_WEB_ADDR")]
    web_addr: Option<std::net::SocketAddr>,
    /// Print shoald's man page (roff) on stdout and exit
    #[arg(long, hide = true)]
    man: bool,
    /// How the log is written on stderr: `text` (coloured only on a terminal) or `json`
    /// (one object per line, for log shippers).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "SHOALD_LOG_FORMAT")]
    log_format: LogFormat,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

/// The log on stderr: the level from `RUST_LOG` (default info, openraft's warnings);
/// colour codes only when stderr is a terminal (a file or the journal gets plain text).
fn init_log(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    let log = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => log
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => log.json().init(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    if args.man {
        let mut page = Vec::new();
        clap_mangen::Man::new(<Args as clap::CommandFactory>::command())
            .section("8")
            .render(&mut page)
            .context("rendering the man page")?;
        std::io::Write::write_all(&mut std::io::stdout(), &page)?;
        return Ok(());
    }
    init_log(args.log_format);
    let node_name = match args.node_name.clone() {
        Some(name) => name,
        None => hostname().context("reading the hostname (or give --node-name)")?,
    };
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating the data dir {}", args.data_dir.display()))?;
    let web = match args.web_addr {
        Some(addr) => {
            let token = shoal_web::Token::load_or_create(&args.data_dir.join("web-token"))?;
            let url = format!("http://{addr}/login?token={}", token.as_str());
            Some((addr, token, url))
        }
        None => None,
    };
    let daemon = Daemon::new(DaemonConfig {
        data_dir: args.data_dir.clone(),
        socket: args.socket.clone(),
        docker_host: args.docker_host.clone(),
        node_name,
        plugin_dir: args.plugin_dir.clone(),
        files_dir: args.files_dir.clone(),
        web_url: web.as_ref().map(|(_, _, url)| url.clone()),
    });
    let listener = listen(&args.socket)?;
    if daemon.resume().await.context("resuming swarm membership")? {
        tracing::info!("resumed swarm membership from {}", args.data_dir.display());
    }
    let (admin, control, logs, events) = daemon.local_services();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let docker_api = serve_docker_api(&args, stop_rx.clone()).await?;
    serve_metrics(&args, &daemon, stop_rx.clone()).await?;
    if let Some((addr, token, _)) = web {
        serve_web(&args, addr, token, stop_rx).await?;
    }
    let shutdown = async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    };
    tracing::info!(socket = %args.socket.display(), "shoald is serving");
    tonic::transport::Server::builder()
        .add_service(admin)
        .add_service(control)
        .add_service(logs)
        .add_service(events)
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await
        .context("serving the local socket")?;
    daemon.shutdown().await;
    let _ = std::fs::remove_file(&args.socket);
    if let Some(path) = docker_api {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// Docker's Engine API on `--docker-api` (beside the local socket by default), served
/// over this shoald's own local socket until `stop`; a unix socket's path, to remove at
/// exit.
async fn serve_docker_api(
    args: &Args,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Option<PathBuf>> {
    let url = match &args.docker_api {
        Some(url) if url == "none" => return Ok(None),
        Some(url) => url.clone(),
        None => {
            let dir = args
                .socket
                .parent()
                .unwrap_or(std::path::Path::new("/run/shoal"));
            format!("unix://{}", dir.join("docker-api.sock").display())
        }
    };
    let backend = shoal_dockerapi::Backend::unix(args.socket.clone());
    let stopped = async move {
        let _ = stop.wait_for(|stopped| *stopped).await;
    };
    let tls = (
        &args.docker_api_tlscacert,
        &args.docker_api_tlscert,
        &args.docker_api_tlskey,
    );
    match shoal_dockerapi::listen_addr(&url).map_err(anyhow::Error::msg)? {
        shoal_dockerapi::Listen::Unix(path) => {
            if tls.0.is_some() || tls.1.is_some() || tls.2.is_some() {
                anyhow::bail!("--docker-api-tls* are for a tcp:// --docker-api; {url} is a unix socket, which the file mode guards");
            }
            let listener = listen(&path)?;
            tracing::info!(socket = %path.display(), "serving Docker's Engine API for swarm objects");
            tokio::spawn(shoal_dockerapi::serve(listener, backend, stopped));
            Ok(Some(path))
        }
        shoal_dockerapi::Listen::Tcp(addr) => {
            let (Some(ca), Some(cert), Some(key)) = tls else {
                anyhow::bail!(
                    "--docker-api {url} is TCP, served only with mutual TLS: give --docker-api-tlscacert (the CA clients' certificates must chain to), --docker-api-tlscert and --docker-api-tlskey (PEM files, as dockerd's --tlsverify)"
                );
            };
            let acceptor = shoal_dockerapi::mutual_tls(ca, cert, key)
                .map_err(|e| anyhow::anyhow!("--docker-api's TLS: {e}"))?;
            let listener = tokio::net::TcpListener::bind(&addr)
                .await
                .with_context(|| format!("listening on --docker-api {url}"))?;
            tracing::info!(%addr, "serving Docker's Engine API for swarm objects (mutual TLS)");
            tokio::spawn(shoal_dockerapi::serve_tls(
                listener, acceptor, backend, stopped,
            ));
            Ok(None)
        }
    }
}

async fn serve_metrics(
    args: &Args,
    daemon: &Daemon,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let Some(addr) = args.metrics_addr else {
        return Ok(());
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening for Prometheus on --metrics-addr {addr}"))?;
    tracing::info!(%addr, "serving metrics at /metrics");
    tokio::spawn(shoal_agent::metrics_http::serve(
        listener,
        daemon.clone(),
        async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        },
    ));
    Ok(())
}

async fn serve_web(
    args: &Args,
    addr: std::net::SocketAddr,
    token: shoal_web::Token,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening for the web view on --web-addr {addr}"))?;
    tracing::info!(%addr, "serving the web view (`shoal web` prints its link)");
    let backend = shoal_dockerapi::Backend::unix(args.socket.clone());
    tokio::spawn(shoal_web::serve(listener, backend, token, async move {
        let _ = stop.wait_for(|stopped| *stopped).await;
    }));
    Ok(())
}

fn listen(socket: &std::path::Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if socket.exists() {
        if answers(socket) {
            anyhow::bail!("another shoald is serving {} already", socket.display());
        }
        std::fs::remove_file(socket)
            .with_context(|| format!("removing the stale socket {}", socket.display()))?;
    }
    let listener =
        UnixListener::bind(socket).with_context(|| format!("listening on {}", socket.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {} to root", socket.display()))?;
    Ok(listener)
}

/// Whether a server answers on `socket`: it takes the connection and replies to an HTTP/2
/// preface within a second. A listener that takes connections and never answers (seen
/// after a `kill -9` under load: the dead daemon's socket lingered with no process
/// serving it) does not keep a new daemon from starting.
fn answers(socket: &std::path::Path) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::os::unix::net::UnixStream::connect(socket) else {
        return false;
    };
    let timeout = Some(std::time::Duration::from_secs(1));
    if stream.set_read_timeout(timeout).is_err() || stream.set_write_timeout(timeout).is_err() {
        return false;
    }
    // The client preface and an empty SETTINGS frame; a gRPC server sends its SETTINGS.
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    let mut reply = [0u8; 9];
    stream.write_all(&hello).is_ok() && matches!(stream.read(&mut reply), Ok(n) if n > 0)
}

fn hostname() -> anyhow::Result<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")?;
    Ok(name.trim().to_string())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down; containers keep running");
}
