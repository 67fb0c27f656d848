//! order-shell: reads its settings, opens the store, wires Kafka into the service
//! (`order_shell::App`, in `lib.rs`), and runs the consumer and the HTTP server until
//! SIGINT/SIGTERM, a producer that failed for good, or a consumer that stopped with an error.
//! Settings: README, "Configuration".

use std::process::ExitCode;
use std::sync::Arc;

use clap::CommandFactory;
use order_shell::config::{Cli, Config};
use order_shell::{App, consume, open_store};
use ordering_http::env::Env;
use ordering_http::metrics::Metrics;
use ordering_http::{Stop, shutdown_signal};
use tokio::sync::watch;

fn main() -> ExitCode {
    ordering_http::memory::run(order_shell::SERVICE, start)
}

async fn start() -> ExitCode {
    // `--help`, `--version` and a malformed command line end here (exit 0 or 2).
    let env = Env::from_command_line(Cli::command()).unwrap_or_else(|e| e.exit());
    // Kept to the end: dropping it flushes the traces not yet exported.
    let started = ordering_http::init_tracing(&env, order_shell::SERVICE)
        .and_then(|telemetry| Ok((telemetry, Config::from_env(&env)?)));
    let (_telemetry, config) = match started {
        Ok(started) => started,
        Err(error) => {
            eprintln!("order-shell: {error}");
            return ExitCode::from(2);
        }
    };
    let metrics = match Metrics::install() {
        Ok(metrics) => metrics,
        Err(error) => {
            eprintln!("order-shell: {error}");
            return ExitCode::from(2);
        }
    };
    // One signal stops everything: the wait for the store, the HTTP server, the consumer.
    let (stop, stopping) = watch::channel(false);
    tokio::spawn({
        let stop = stop.clone();
        async move {
            shutdown_signal().await;
            tracing::info!("shutting down");
            let _ = stop.send(true);
        }
    });
    let stopped = |mut stopping: watch::Receiver<bool>| async move {
        let _ = stopping.wait_for(|stop| *stop).await;
    };

    let store = tokio::select! {
        store = open_store(&config) => match store {
            Ok(store) => store,
            Err(error) => {
                eprintln!("order-shell: {error}");
                return ExitCode::from(2);
            }
        },
        () = stopped(stopping.clone()) => return ExitCode::SUCCESS,
    };
    let app = match App::new(config, store, metrics) {
        Ok(app) => Arc::new(app),
        Err(error) => {
            eprintln!("order-shell: {error}");
            return ExitCode::from(2);
        }
    };
    // So does a producer that failed for good (no dead letter could be written any more):
    // the shell exits non-zero for its supervisor to start a new one.
    let failed = tokio::spawn({
        let (app, stop) = (app.clone(), stop.clone());
        async move {
            let error = app.producer().fatal().await;
            tracing::error!(%error, "the producer failed for good; stopping, so that a supervisor restarts this service");
            let _ = stop.send(true);
            Stop::ProducerFailed(error)
        }
    });
    // A login or a certificate the brokers refuse stops the start, saying which setting to
    // look at; brokers that are merely down are waited for.
    if let Err(failure) = app
        .producer()
        .check_access(ordering_http::security::ACCESS_CHECK)
        .await
    {
        eprintln!(
            "order-shell: cannot connect to Kafka: {failure}; {}",
            ordering_http::security::kafka_hint(&failure)
        );
        return ExitCode::from(1);
    }
    let addr = app.config().listen;
    let https = app.config().https.clone();
    let listener = match ordering_http::listen(order_shell::SERVICE, addr, https).await {
        Ok(listener) => listener,
        Err(code) => return code,
    };

    // A consumer that stops with an error stops the shell too, with a non-zero exit code: a
    // service that no longer consumes must not look alive to its supervisor.
    let consumer = tokio::spawn({
        let (app, stop, stopping) = (app.clone(), stop.clone(), stopping.clone());
        async move {
            let consumed = consume(app, stopped(stopping)).await;
            if consumed.is_err() {
                let _ = stop.send(true);
            }
            consumed
        }
    });
    app.clone().serve(listener, stopped(stopping)).await;

    let mut code = ExitCode::SUCCESS;
    match consumer.await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::error!(%error, "the consumer stopped with an error");
            code = ExitCode::FAILURE;
        }
        Err(error) => {
            tracing::error!(%error, "the consumer task failed");
            code = ExitCode::FAILURE;
        }
    }
    if let Err(error) = app.producer().flush().await {
        tracing::warn!(%error, "flushing the producer at shutdown failed");
    }
    if failed.is_finished() {
        if let Ok(stop) = failed.await {
            code = stop.exit_code();
        }
    } else {
        failed.abort();
    }
    tracing::info!("order-shell stopped");
    code
}
