//! torchrun's launch environment: which rank this process is and where the rendezvous store is.

use std::net::IpAddr;

use crate::DistError;

/// This process's place in a multi-process run, as torchrun (or `nas launch`) describes it in the
/// environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// This process's rank, `0..world_size` (`RANK`).
    pub rank: usize,
    /// Number of processes in the run, at least 2 (`WORLD_SIZE`).
    pub world_size: usize,
    /// This process's index on its machine (`LOCAL_RANK`); picks the GPU when there are several.
    pub local_rank: usize,
    /// Host name or address of the rendezvous store (`MASTER_ADDR`).
    pub master_addr: String,
    /// TCP port of the rendezvous store (`MASTER_PORT`).
    pub master_port: u16,
    /// Whether torchrun's agent hosts the store (`TORCHELASTIC_USE_AGENT_STORE=True`): then every
    /// rank connects as a client; otherwise rank 0 hosts it.
    pub agent_store: bool,
    /// Network interfaces Gloo should use, comma-separated (`GLOO_SOCKET_IFNAME`, as in
    /// PyTorch); `None` lets Gloo pick (see [`Launch::gloo_device`]).
    pub gloo_socket_ifname: Option<String>,
}

/// The network device a Gloo process group binds to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GlooDevice {
    /// Gloo's default: the address this machine's host name resolves to, else loopback.
    Default,
    /// The address a host name (or literal address) resolves to.
    Hostname(String),
    /// The named network interfaces, comma-separated (e.g. `eth0` or `eth0,eth1`).
    Interfaces(String),
}

impl Launch {
    /// Reads torchrun's environment: `RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`,
    /// `MASTER_PORT`, and the optional `TORCHELASTIC_USE_AGENT_STORE` and `GLOO_SOCKET_IFNAME`.
    ///
    /// `Ok(None)` when `WORLD_SIZE` is unset, empty or 1 (an ordinary single-process run). Every
    /// error names the variable, its value and what it must be.
    pub fn from_env() -> Result<Option<Launch>, DistError> {
        Launch::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`Launch::from_env`] over any source of variables (`lookup(name)` gives a variable's
    /// value, `None` when unset), e.g. a map in tests.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Launch>, DistError> {
        let world_size = match lookup("WORLD_SIZE") {
            None => return Ok(None),
            Some(value) if value.trim().is_empty() => return Ok(None),
            Some(value) => {
                let world_size = parse_count("WORLD_SIZE", &value)?;
                if world_size == 0 {
                    return Err(env_error(
                        "WORLD_SIZE",
                        Some(&value),
                        "the number of processes must be at least 1",
                    ));
                }
                world_size
            }
        };
        if world_size == 1 {
            return Ok(None);
        }
        let rank_text = required(&lookup, "RANK", "this process's rank, 0 to WORLD_SIZE - 1")?;
        let rank = parse_count("RANK", &rank_text)?;
        if rank >= world_size {
            return Err(env_error(
                "RANK",
                Some(&rank_text),
                &format!("a rank must be below WORLD_SIZE={world_size}"),
            ));
        }
        let local_text = required(
            &lookup,
            "LOCAL_RANK",
            "this process's index on its machine (torchrun sets it)",
        )?;
        let local_rank = parse_count("LOCAL_RANK", &local_text)?;
        let master_addr = required(
            &lookup,
            "MASTER_ADDR",
            "the host name or address of rank 0's machine (or torchrun's agent store)",
        )?
        .trim()
        .to_owned();
        let port_text = required(
            &lookup,
            "MASTER_PORT",
            "the TCP port of the rendezvous store",
        )?;
        let master_port = match port_text.trim().parse::<u16>() {
            Ok(port) if port > 0 => port,
            _ => {
                return Err(env_error(
                    "MASTER_PORT",
                    Some(&port_text),
                    "a TCP port must be a whole number from 1 to 65535",
                ))
            }
        };
        let agent_store = match lookup("TORCHELASTIC_USE_AGENT_STORE") {
            None => false,
            Some(value) => match value.trim() {
                "True" | "true" | "1" => true,
                "False" | "false" | "0" | "" => false,
                _ => {
                    return Err(env_error(
                        "TORCHELASTIC_USE_AGENT_STORE",
                        Some(&value),
                        "must be True or False (torchrun sets it), or unset",
                    ))
                }
            },
        };
        let gloo_socket_ifname = lookup("GLOO_SOCKET_IFNAME")
            .map(|value| value.trim().to_owned())
            .filter(|value| !value.is_empty());
        Ok(Some(Launch {
            rank,
            world_size,
            local_rank,
            master_addr,
            master_port,
            agent_store,
            gloo_socket_ifname,
        }))
    }

    /// Whether this process hosts the rendezvous store: rank 0, unless torchrun's agent does.
    pub fn hosts_store(&self) -> bool {
        !self.agent_store && self.rank == 0
    }

    /// The device Gloo binds to: the interfaces of `GLOO_SOCKET_IFNAME` when set; loopback when
    /// `MASTER_ADDR` is a loopback address (a run on one machine); Gloo's default otherwise.
    pub fn gloo_device(&self) -> GlooDevice {
        if let Some(names) = &self.gloo_socket_ifname {
            return GlooDevice::Interfaces(names.clone());
        }
        let loopback = self.master_addr.eq_ignore_ascii_case("localhost")
            || self
                .master_addr
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_ok_and(|address| address.is_loopback());
        if loopback {
            GlooDevice::Hostname(self.master_addr.clone())
        } else {
            GlooDevice::Default
        }
    }
}

/// A required variable's value, or an error saying it is unset and what it should hold.
fn required(
    lookup: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
    meaning: &str,
) -> Result<String, DistError> {
    match lookup(variable) {
        Some(value) if !value.trim().is_empty() => Ok(value),
        value => Err(env_error(
            variable,
            value.as_deref(),
            &format!(
                "WORLD_SIZE is above 1, so {variable} must be set to {meaning}; launch with torchrun or `nas launch`"
            ),
        )),
    }
}

/// A whole number (rank, count) from a variable.
fn parse_count(variable: &'static str, value: &str) -> Result<usize, DistError> {
    value
        .trim()
        .parse::<usize>()
        .map_err(|_| env_error(variable, Some(value), "must be a whole number, 0 or more"))
}

fn env_error(variable: &'static str, value: Option<&str>, reason: &str) -> DistError {
    DistError::Env {
        variable,
        value: value.map(str::to_owned),
        reason: reason.to_owned(),
    }
}
