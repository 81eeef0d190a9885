//! `nas launch -n N -- train ...`: N local processes of a data-parallel run, with the environment
//! torchrun would give them (`RANK`, `LOCAL_RANK`, `WORLD_SIZE`, `LOCAL_WORLD_SIZE`,
//! `MASTER_ADDR`, `MASTER_PORT`), for one machine without torchrun.

use std::{
    net::TcpListener,
    path::Path,
    process::{Child, Command, ExitStatus},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

/// How long the other ranks get to exit on their own (their collectives time out) after one
/// failed, before they are killed.
const GRACE: Duration = Duration::from_secs(30);

/// A free TCP port on the loopback interface for the rendezvous store.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port on 127.0.0.1")?;
    Ok(listener.local_addr()?.port())
}

/// Runs `args` (a `nas` command line without the program name) as `processes` ranks of one run
/// on this machine; fails when any rank fails, naming it.
pub fn launch(program: &Path, processes: usize, args: &[String]) -> Result<()> {
    if processes == 0 {
        bail!("--processes must be at least 1");
    }
    if args.is_empty() {
        bail!("nothing to launch: give the command after `--`, e.g. `nas launch -n 2 -- train --config run.toml`");
    }
    let port = free_port()?;
    let mut children: Vec<(usize, Child)> = Vec::new();
    for rank in 0..processes {
        let child = Command::new(program)
            .args(args)
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("WORLD_SIZE", processes.to_string())
            .env("LOCAL_WORLD_SIZE", processes.to_string())
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string())
            .env_remove("TORCHELASTIC_USE_AGENT_STORE")
            .spawn()
            .with_context(|| format!("starting rank {rank}: {}", program.display()))?;
        children.push((rank, child));
    }
    let mut failed: Option<(usize, ExitStatus)> = None;
    let mut deadline: Option<Instant> = None;
    while !children.is_empty() {
        let mut still_running = Vec::new();
        for (rank, mut child) in children {
            match child.try_wait()? {
                Some(status) if !status.success() => {
                    failed.get_or_insert((rank, status));
                    deadline.get_or_insert_with(|| Instant::now() + GRACE);
                }
                Some(_) => {}
                None => still_running.push((rank, child)),
            }
        }
        children = still_running;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            for (rank, child) in &mut children {
                eprintln!(
                    "nas launch: killing rank {rank}, which did not exit after another rank failed"
                );
                let _ = child.kill();
                let _ = child.wait();
            }
            children.clear();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if let Some((rank, status)) = failed {
        bail!("rank {rank} of {processes} failed ({status}); see its error above");
    }
    Ok(())
}
