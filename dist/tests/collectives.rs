//! Collectives between real processes on 127.0.0.1.
//!
//! Each multi-process test re-runs this test binary once per rank, filtered to itself
//! (`--exact`), with torchrun's variables and the marker `NAS_DIST_TEST_RANK_BODY` set; in a
//! child the test runs its rank body, in the parent it spawns the ranks and checks their exit
//! status and output.

use std::{
    io::Read,
    net::TcpListener,
    process::{Child, Command, ExitStatus, Stdio},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use nas_dist::{DistError, Launch, ProcessGroup};
use tch::{Kind, Tensor};

/// Set in a child process: run the rank body instead of spawning ranks.
const RANK_BODY: &str = "NAS_DIST_TEST_RANK_BODY";

/// This process's launch when it is a rank spawned by [`run_ranks`].
fn rank_launch() -> Option<Launch> {
    std::env::var_os(RANK_BODY)?;
    Some(
        Launch::from_env()
            .expect("the parent sets a valid launch environment")
            .expect("the parent sets WORLD_SIZE above 1"),
    )
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a free port on 127.0.0.1");
    listener.local_addr().expect("bound address").port()
}

/// What one rank did.
struct RankOutput {
    rank: usize,
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl RankOutput {
    fn describe(&self) -> String {
        format!(
            "rank {} exited with {}\n--- stdout\n{}\n--- stderr\n{}",
            self.rank, self.status, self.stdout, self.stderr
        )
    }
}

fn read_all(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

/// Runs `test`'s rank body in `world` processes; kills them all and fails if they are not done
/// within `deadline`.
fn run_ranks(test: &str, world: usize, deadline: Duration) -> Vec<RankOutput> {
    assert!(
        nas_dist::available(),
        "nas-dist was built without its c10d shim: run scripts/setup.sh (it fetches gloo's headers) and rebuild"
    );
    let port = free_port();
    let exe = std::env::current_exe().expect("path of this test binary");
    let children = (0..world)
        .map(|rank| {
            let mut command = Command::new(&exe);
            command
                .args([test, "--exact", "--nocapture", "--include-ignored"])
                .env(RANK_BODY, "1")
                .env("RANK", rank.to_string())
                .env("LOCAL_RANK", rank.to_string())
                .env("WORLD_SIZE", world.to_string())
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", port.to_string())
                .env_remove("TORCHELASTIC_USE_AGENT_STORE")
                .env_remove("GLOO_SOCKET_IFNAME");
            command
        })
        .collect();
    wait_all(children, deadline)
}

/// Starts `commands` (piping their output) and waits for all; kills them all and fails if they
/// are not done within `deadline`.
fn wait_all(commands: Vec<Command>, deadline: Duration) -> Vec<RankOutput> {
    let mut children: Vec<(usize, Child, JoinHandle<String>, JoinHandle<String>)> = commands
        .into_iter()
        .enumerate()
        .map(|(rank, mut command)| {
            let mut child = command
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawning a process");
            let stdout = read_all(child.stdout.take().expect("piped stdout"));
            let stderr = read_all(child.stderr.take().expect("piped stderr"));
            (rank, child, stdout, stderr)
        })
        .collect();
    let start = Instant::now();
    let mut statuses: Vec<Option<ExitStatus>> = vec![None; children.len()];
    while statuses.iter().any(Option::is_none) {
        if start.elapsed() > deadline {
            for (_, child, _, _) in &mut children {
                let _ = child.kill();
            }
            let outputs: Vec<String> = children
                .into_iter()
                .map(|(rank, mut child, stdout, stderr)| {
                    let _ = child.wait();
                    format!(
                        "process {rank}:\n{}\n{}",
                        stdout.join().unwrap_or_default(),
                        stderr.join().unwrap_or_default()
                    )
                })
                .collect();
            panic!(
                "the processes did not finish within {deadline:?} (killed):\n{}",
                outputs.join("\n")
            );
        }
        for (rank, child, _, _) in &mut children {
            if statuses[*rank].is_none() {
                statuses[*rank] = child.try_wait().expect("polling a process");
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    children
        .into_iter()
        .map(|(rank, _, stdout, stderr)| RankOutput {
            rank,
            status: statuses[rank].expect("finished"),
            stdout: stdout.join().expect("stdout reader"),
            stderr: stderr.join().expect("stderr reader"),
        })
        .collect()
}

fn values_f32(tensor: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(&tensor.reshape([-1])).expect("f32 values")
}

fn values_f64(tensor: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(&tensor.reshape([-1])).expect("f64 values")
}

fn values_i64(tensor: &Tensor) -> Vec<i64> {
    Vec::<i64>::try_from(&tensor.reshape([-1])).expect("i64 values")
}

#[test]
fn all_reduce_averages_known_gradients() {
    let Some(launch) = rank_launch() else {
        let outputs = run_ranks(
            "all_reduce_averages_known_gradients",
            2,
            Duration::from_secs(30),
        );
        for output in &outputs {
            assert!(output.status.success(), "{}", output.describe());
            assert!(
                output.stdout.contains(&format!(
                    "rank {} of 2: all checks passed (agent store: false)",
                    output.rank
                )),
                "{}",
                output.describe()
            );
        }
        return;
    };
    let rank = launch.rank;
    let r = rank as f64;
    let group = ProcessGroup::new(&launch, Duration::from_secs(10)).expect("joining the group");
    assert_eq!(group.rank(), rank);
    assert_eq!(group.world_size(), 2);

    // Gradients with known values: rank r holds [r+1, 2(r+1)] and a 2x3 f64 tensor.
    let first = Tensor::from_slice(&[(r + 1.0) as f32, (2.0 * (r + 1.0)) as f32]);
    let second_values: Vec<f64> = (0..6)
        .map(|i| (i as f64 - 2.5) * (r + 1.0) + r * 0.25)
        .collect();
    let second = Tensor::from_slice(&second_values).reshape([2, 3]);
    group
        .all_reduce_mean(&[first.shallow_clone(), second.shallow_clone()])
        .expect("all_reduce_mean");
    // Means over r = 0, 1: [1.5, 3] and (i - 2.5) * 1.5 + 0.125.
    assert_eq!(values_f32(&first), vec![1.5, 3.0], "rank {rank}");
    let expected: Vec<f64> = (0..6).map(|i| (i as f64 - 2.5) * 1.5 + 0.125).collect();
    assert_eq!(values_f64(&second), expected, "rank {rank}");
    assert_eq!(second.size(), vec![2, 3]);

    // An integer sum: [r, 10] -> [1, 20].
    let counts = Tensor::from_slice(&[rank as i64, 10]);
    group
        .all_reduce_sum(&[counts.shallow_clone()])
        .expect("all_reduce_sum");
    assert_eq!(values_i64(&counts), vec![1, 20], "rank {rank}");

    // Broadcast from rank 0, then from rank 1.
    let from_zero = Tensor::from_slice(&[10.0 * r as f32 + 1.0, 10.0 * r as f32 + 2.0]);
    let ints = Tensor::from_slice(&[100 * rank as i64 + 7]);
    group
        .broadcast(&[from_zero.shallow_clone(), ints.shallow_clone()], 0)
        .expect("broadcast from rank 0");
    assert_eq!(values_f32(&from_zero), vec![1.0, 2.0], "rank {rank}");
    assert_eq!(values_i64(&ints), vec![7], "rank {rank}");
    let from_one = Tensor::from_slice(&[r * 3.0 + 0.5]);
    group
        .broadcast(&[from_one.shallow_clone()], 1)
        .expect("broadcast from rank 1");
    assert_eq!(values_f64(&from_one), vec![3.5], "rank {rank}");

    // Refused before any exchange (so every rank fails alike, nothing hangs).
    let strided = Tensor::zeros([3, 4], (Kind::Float, tch::Device::Cpu)).transpose(0, 1);
    match group.all_reduce_sum(&[first.shallow_clone(), strided]) {
        Err(DistError::InvalidTensor {
            index: 1, reason, ..
        }) => {
            assert!(reason.contains("not contiguous"), "{reason}")
        }
        other => panic!("a strided view must be refused, got {other:?}"),
    }
    match group.all_reduce_mean(&[counts.shallow_clone()]) {
        Err(DistError::InvalidTensor {
            index: 0, reason, ..
        }) => {
            assert!(reason.contains("floating-point"), "{reason}")
        }
        other => panic!("an integer mean must be refused, got {other:?}"),
    }
    assert!(matches!(
        group.broadcast(&[first.shallow_clone()], 2),
        Err(DistError::InvalidArgument(_))
    ));

    group.barrier().expect("barrier");
    println!(
        "rank {rank} of 2: all checks passed (agent store: {})",
        launch.agent_store
    );
}

/// torchrun (from the project's `.venv`, as `scripts/setup.sh` installs it) starts the ranks; its
/// agent hosts the store (`TORCHELASTIC_USE_AGENT_STORE=True`) and `MASTER_ADDR` is `localhost`.
#[test]
fn torchrun_with_its_agent_store_runs_the_ranks() {
    if std::env::var_os(RANK_BODY).is_some() {
        return;
    }
    let torchrun = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/torchrun");
    if !torchrun.is_file() {
        // Only a user-supplied libtorch ($LIBTORCH) comes without the project's virtualenv.
        assert!(
            std::env::var_os("LIBTORCH").is_some(),
            "{} is missing: run scripts/setup.sh",
            torchrun.display()
        );
        println!(
            "skipped: no torchrun at {} ($LIBTORCH is set)",
            torchrun.display()
        );
        return;
    }
    assert!(nas_dist::available(), "built without the c10d shim");
    let exe = std::env::current_exe().expect("path of this test binary");
    let mut command = Command::new(&torchrun);
    command
        .args(["--nproc-per-node", "2", "--no-python"])
        .arg(&exe)
        .args([
            "all_reduce_averages_known_gradients",
            "--exact",
            "--nocapture",
        ])
        .env(RANK_BODY, "1")
        .env("OMP_NUM_THREADS", "1");
    for name in [
        "RANK",
        "WORLD_SIZE",
        "LOCAL_RANK",
        "MASTER_ADDR",
        "MASTER_PORT",
    ] {
        command.env_remove(name);
    }
    let output = wait_all(vec![command], Duration::from_secs(60)).remove(0);
    assert!(output.status.success(), "torchrun: {}", output.describe());
    for rank in 0..2 {
        assert!(
            output.stdout.contains(&format!(
                "rank {rank} of 2: all checks passed (agent store: true)"
            )),
            "{}",
            output.describe()
        );
    }
}

#[test]
fn a_dead_rank_fails_the_others_with_a_clear_error_within_the_timeout() {
    let timeout = Duration::from_secs(5);
    let Some(launch) = rank_launch() else {
        let start = Instant::now();
        let outputs = run_ranks(
            "a_dead_rank_fails_the_others_with_a_clear_error_within_the_timeout",
            2,
            Duration::from_secs(30),
        );
        for output in &outputs {
            assert!(output.status.success(), "{}", output.describe());
        }
        assert!(
            outputs[1].stdout.contains("rank 1 joined; exiting"),
            "{}",
            outputs[1].describe()
        );
        assert!(
            outputs[0]
                .stdout
                .contains("rank 0: the dead rank was reported"),
            "{}",
            outputs[0].describe()
        );
        println!("{}", outputs[0].stdout);
        assert!(start.elapsed() < Duration::from_secs(30));
        return;
    };
    let group = ProcessGroup::new(&launch, timeout).expect("joining the group");
    if launch.rank == 1 {
        println!("rank 1 joined; exiting without any collective");
        // Dies as a crashed rank would: no destructor, no goodbye.
        std::process::exit(0);
    }
    let tensor = Tensor::ones([1024], (Kind::Float, tch::Device::Cpu));
    let start = Instant::now();
    let result = group.all_reduce_sum(&[tensor.shallow_clone()]);
    let elapsed = start.elapsed();
    let error = result.expect_err("an all_reduce with a dead rank must fail");
    assert!(
        elapsed < timeout + Duration::from_secs(3),
        "failed only after {elapsed:?} (timeout {timeout:?})"
    );
    assert!(matches!(error, DistError::Collective { .. }), "{error:?}");
    let message = error.to_string();
    for part in [
        "all_reduce_sum of 1 tensor",
        "rank 0 of 2",
        "timeout 5s",
        "check the other ranks' output",
    ] {
        assert!(message.contains(part), "`{part}` missing from: {message}");
    }
    let DistError::Collective { message: cause, .. } = &error else {
        unreachable!()
    };
    assert!(
        cause.len() > 10,
        "c10d's own message should say what broke: {cause:?}"
    );
    println!("rank 0: all_reduce failed after {elapsed:?}: {message}");

    // The group stays usable for reporting: a later collective fails too, without hanging.
    let start = Instant::now();
    let barrier = group.barrier();
    assert!(barrier.is_err(), "a barrier with a dead rank must fail");
    assert!(start.elapsed() < timeout + Duration::from_secs(3));

    let start = Instant::now();
    drop(group);
    assert!(
        start.elapsed() < timeout + Duration::from_secs(3),
        "leaving the group took {:?}",
        start.elapsed()
    );
    println!("rank 0: the dead rank was reported");
}

#[test]
fn a_stalled_rank_fails_the_others_at_the_timeout() {
    let timeout = Duration::from_secs(2);
    let Some(launch) = rank_launch() else {
        let outputs = run_ranks(
            "a_stalled_rank_fails_the_others_at_the_timeout",
            2,
            Duration::from_secs(30),
        );
        for output in &outputs {
            assert!(output.status.success(), "{}", output.describe());
        }
        assert!(
            outputs[0]
                .stdout
                .contains("rank 0: the stalled rank was reported"),
            "{}",
            outputs[0].describe()
        );
        println!("{}", outputs[0].stdout);
        return;
    };
    let group = ProcessGroup::new(&launch, timeout).expect("joining the group");
    if launch.rank == 1 {
        // Alive but never joining the collective (a hung rank), until well past the timeout.
        std::thread::sleep(timeout * 3);
        std::process::exit(0);
    }
    let tensor = Tensor::ones([16], (Kind::Float, tch::Device::Cpu));
    let start = Instant::now();
    let error = group
        .all_reduce_sum(&[tensor.shallow_clone()])
        .expect_err("an all_reduce with a stalled rank must fail");
    let elapsed = start.elapsed();
    assert!(
        elapsed >= timeout - Duration::from_millis(100)
            && elapsed < timeout + Duration::from_secs(3),
        "failed after {elapsed:?} (timeout {timeout:?})"
    );
    let message = error.to_string();
    assert!(
        message.to_lowercase().contains("timed out") && message.contains("timeout 2s"),
        "{message}"
    );
    println!("rank 0: all_reduce failed after {elapsed:?}: {message}");
    let start = Instant::now();
    drop(group);
    println!("rank 0: left the group in {:?}", start.elapsed());
    println!("rank 0: the stalled rank was reported");
}

#[test]
fn joining_without_the_other_ranks_fails_within_the_timeout() {
    if std::env::var_os(RANK_BODY).is_some() {
        return;
    }
    assert!(nas_dist::available(), "built without the c10d shim");
    let launch = Launch {
        rank: 0,
        world_size: 2,
        local_rank: 0,
        master_addr: "127.0.0.1".to_owned(),
        master_port: free_port(),
        agent_store: false,
        gloo_socket_ifname: None,
    };
    let timeout = Duration::from_millis(1500);
    let start = Instant::now();
    let error = ProcessGroup::new(&launch, timeout).expect_err("rank 1 never comes");
    let elapsed = start.elapsed();
    assert!(
        elapsed < timeout + Duration::from_secs(5),
        "took {elapsed:?}"
    );
    let message = error.to_string();
    assert!(matches!(error, DistError::Init { .. }), "{error:?}");
    assert!(
        message.contains("rank 0 of 2") && message.contains("127.0.0.1:"),
        "{message}"
    );
    println!("{message}");
}

#[test]
#[ignore = "a measurement, not a check: cargo test --release -p nas-dist -- --ignored --nocapture"]
fn all_reduce_sum_of_one_million_floats_timing() {
    let Some(launch) = rank_launch() else {
        let outputs = run_ranks(
            "all_reduce_sum_of_one_million_floats_timing",
            2,
            Duration::from_secs(60),
        );
        for output in &outputs {
            assert!(output.status.success(), "{}", output.describe());
        }
        println!("{}", outputs[0].stdout);
        return;
    };
    let group = ProcessGroup::new(&launch, Duration::from_secs(30)).expect("joining the group");
    let tensor = Tensor::ones([1 << 20], (Kind::Float, tch::Device::Cpu));
    for _ in 0..3 {
        group
            .all_reduce_sum(&[tensor.shallow_clone()])
            .expect("warm-up");
    }
    let mut times = Vec::new();
    for _ in 0..30 {
        group.barrier().expect("barrier");
        let start = Instant::now();
        group
            .all_reduce_sum(&[tensor.shallow_clone()])
            .expect("all_reduce_sum");
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    if launch.rank == 0 {
        println!(
            "all_reduce_sum of 1M f32 between 2 processes on loopback: median {:.2} ms, min {:.2} ms, max {:.2} ms over {} runs",
            times[times.len() / 2],
            times[0],
            times[times.len() - 1],
            times.len()
        );
    }
}
