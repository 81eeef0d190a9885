//! Supernet training: each step runs the sampler's plan (one or more forward/backward passes with
//! accumulated gradients), then one optimizer update with the plan's momentum group and LR.

use std::{
    path::{Path, PathBuf},
    rc::Rc,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Instant,
};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use nas_sdk::{
    ForwardOptions, GenerateMode, HeldoutProbe, HostContext, LossKind, LrOverride, PathArch,
    RunInfo, SamplerClient, StepFeedback, StepInfo, StepPlan,
};
use serde::Serialize;
use tch::{Device, Tensor};

use crate::{
    checkpoint::{self, CheckpointState, CheckpointTensors},
    config::RunConfig,
    data::{BatchSource, Dataset},
    distributed::Distributed,
    generator::RunGenerator,
    metrics::{self, MetricsWriter, PathRecord, ProbeRecord, StepRecord},
    optim::{LrSchedule, Optimizer},
    plugins::Origin,
    session::{Services, SharedCatalog, Space},
};

/// How training shows its progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// A progress bar on a terminal, else a log line every 5% of the run.
    Bar,
    /// A log line every 5% of the run.
    Lines,
    /// Nothing (callers report themselves).
    Silent,
}

/// How a training invocation ends early.
#[derive(Clone, Debug, Default)]
pub struct StopPolicy {
    /// Stop after this many steps in this invocation (writing a checkpoint), as a time-boxed job
    /// would; `None` runs to the end.
    pub after_steps: Option<u64>,
    /// Set (by a signal handler) to stop after the current step, writing a checkpoint.
    pub interrupt: Option<Arc<AtomicBool>>,
}

/// A training run in progress.
pub struct Trainer {
    config: RunConfig,
    run_dir: PathBuf,
    device: Device,
    data: Dataset,
    space: Rc<Space>,
    sampler: SamplerClient,
    sampler_origin: Origin,
    generator: Option<RunGenerator>,
    params: Vec<(String, Tensor)>,
    buffers: Vec<(String, Tensor)>,
    optimizer: Optimizer,
    schedule: LrSchedule,
    batches: BatchSource,
    total_steps: u64,
    steps_per_epoch: u64,
    step: u64,
    batches_consumed: u64,
    /// The process group of a data-parallel run (`None`: this process trains alone).
    dist: Option<Distributed>,
}

/// Written to `<run>/run.json`: what produced the run.
#[derive(Serialize)]
struct RunManifest<'a> {
    space: &'a Origin,
    space_config: serde_json::Value,
    sampler: &'a Origin,
    #[serde(skip_serializing_if = "Option::is_none")]
    generator: Option<&'a Origin>,
    data: &'a crate::data::DataInfo,
    device: String,
    total_steps: u64,
    steps_per_epoch: u64,
    sdk_version: &'a str,
    libtorch_version: &'a str,
    world_size: usize,
}

fn step_seed(seed: u64, step: u64) -> i64 {
    // Derive libtorch's RNG seed per step so stochastic layers replay exactly after a resume.
    use rand::RngCore;
    (nas_sdk::rng::stream(seed, step, "torch").next_u64() >> 1) as i64
}

impl Trainer {
    /// Prepares a run: loads data and plugins, builds the supernet, and (with `resume`) restores
    /// the latest checkpoint of `run_dir`.
    pub fn new(
        config: RunConfig,
        run_dir: PathBuf,
        catalog: SharedCatalog,
        device: Device,
        resume: bool,
    ) -> Result<Self> {
        Self::new_with(config, run_dir, catalog, device, resume, None)
    }

    /// [`Trainer::new`] for one process of a data-parallel run (`dist`): the ranks check that
    /// they run the same config, each takes its slice of every global batch, and all start from
    /// rank 0's weights and optimizer state.
    pub fn new_with(
        config: RunConfig,
        run_dir: PathBuf,
        catalog: SharedCatalog,
        device: Device,
        resume: bool,
        dist: Option<Distributed>,
    ) -> Result<Self> {
        if let Some(dist) = &dist {
            // Before any loading, so a mismatched rank is refused at once.
            dist.check_same_config(&config.trajectory_hash())?;
        }
        let data = Dataset::load(&config.data, config.run.seed, device)?;
        let mut space = Space::create(
            &catalog,
            &config.space,
            Some((data.channels, data.resolution, data.classes)),
        )?;
        tch::manual_seed(step_seed(config.run.seed, u64::MAX));
        space.build(device)?;
        let space = Rc::new(space);
        let params = space.parameters()?;
        let buffers = space.buffers()?;

        let (rank, world_size) = dist.as_ref().map_or((0, 1), |d| (d.rank(), d.world_size()));
        let batches = BatchSource::sharded(
            data.train.len(),
            config.train.batch_size,
            config.run.seed,
            rank,
            world_size,
        )?;
        let steps_per_epoch = batches.per_epoch();
        let total_steps = if config.train.steps > 0 {
            config.train.steps
        } else {
            config.train.epochs * steps_per_epoch
        };
        let schedule = LrSchedule::new(&config.optim, total_steps);
        let optimizer = Optimizer::new(
            params.iter().map(|(_, t)| t.shallow_clone()).collect(),
            &config.optim,
        );

        let (mut sampler, sampler_origin) = catalog
            .borrow_mut()
            .new_sampler(&config.sampler.name, &config.sampler.config_json())?;
        let run_info = RunInfo {
            seed: config.run.seed,
            total_steps,
            steps_per_epoch,
            rank: rank as u32,
            world_size: world_size as u32,
        };
        let services = || {
            HostContext::from_services(Services {
                run_info,
                space: space.clone(),
                catalog: catalog.clone(),
            })
        };
        let generator = if config.generator.name.is_empty() {
            None
        } else {
            tch::manual_seed(step_seed(config.run.seed, u64::MAX - 1));
            let generator = RunGenerator::create(&catalog, &config.generator, services(), device)?;
            check_metrics_agree(&catalog, &config, &generator)?;
            Some(generator)
        };
        sampler
            .start(services())
            .map_err(|e| sampler_origin.error("start", e))?;

        let mut trainer = Trainer {
            config,
            run_dir,
            device,
            data,
            space,
            sampler,
            sampler_origin,
            generator,
            params,
            buffers,
            optimizer,
            schedule,
            batches,
            total_steps,
            steps_per_epoch,
            step: 0,
            batches_consumed: 0,
            dist,
        };
        if resume {
            trainer.restore()?;
        }
        trainer.synchronise_state()?;
        Ok(trainer)
    }

    /// Makes every rank hold rank 0's parameters, buffers, optimizer state and generator.
    fn synchronise_state(&self) -> Result<()> {
        let Some(dist) = &self.dist else {
            return Ok(());
        };
        dist.broadcast_from_rank0(&self.state_tensors())
    }

    /// Every tensor of the training state, in a fixed order: parameters, buffers, optimizer
    /// state, then the generator's parameters and optimizer state.
    fn state_tensors(&self) -> Vec<Tensor> {
        let mut tensors: Vec<Tensor> = self
            .params
            .iter()
            .chain(&self.buffers)
            .map(|(_, t)| t.shallow_clone())
            .collect();
        tensors.extend(self.optimizer.state().into_iter().map(|(_, _, _, t)| t));
        if let Some(generator) = &self.generator {
            tensors.extend(generator.params.iter().map(|(_, t)| t.shallow_clone()));
            tensors.extend(
                generator
                    .optimizer
                    .state()
                    .into_iter()
                    .map(|(_, _, _, t)| t),
            );
        }
        tensors
    }

    /// In a data-parallel run, fails unless all ranks hold the same training state (a cheap
    /// guard run at checkpoints and at the end); logs the state's digest.
    fn check_ranks_agree(&self) -> Result<()> {
        if let Some(dist) = &self.dist {
            let digest =
                dist.check_identical(&self.state_tensors(), "parameters or optimizer state")?;
            eprintln!(
                "rank {}: training state after step {} has digest {digest}, the same on all {} ranks",
                dist.rank(),
                self.step,
                dist.world_size()
            );
        }
        Ok(())
    }

    /// Whether this process writes the run folder (rank 0, or the only process).
    fn writes_outputs(&self) -> bool {
        self.dist.as_ref().is_none_or(|d| d.rank() == 0)
    }

    /// Processes training together (1 when not distributed).
    fn world_size(&self) -> usize {
        self.dist.as_ref().map_or(1, |d| d.world_size())
    }

    /// Total steps of the run.
    pub fn total_steps(&self) -> u64 {
        self.total_steps
    }

    /// The space.
    pub fn space(&self) -> &Rc<Space> {
        &self.space
    }

    /// The dataset.
    pub fn data(&self) -> &Dataset {
        &self.data
    }

    fn restore(&mut self) -> Result<()> {
        let Some(dir) = checkpoint::latest(&self.run_dir)? else {
            bail!(
                "--resume: {} has no checkpoint yet (checkpoints/latest.json is missing)",
                self.run_dir.display()
            );
        };
        let (state, tensors) = checkpoint::load(&dir)?;
        let saved_world = state.world_size.unwrap_or(1);
        if saved_world != self.world_size() as u64 {
            bail!(
                "--resume: the checkpoint in {} was written by {saved_world} process(es), this run has {}; resume with the same number of processes (the data order and batch split depend on it)",
                dir.display(),
                self.world_size()
            );
        }
        let hash = self.config.trajectory_hash();
        if state.config_hash != hash {
            bail!(
                "--resume: the checkpoint in {} was written with another config (hash {} vs {}); resume with the run's own config.toml",
                dir.display(),
                state.config_hash,
                hash
            );
        }
        checkpoint::copy_into(&self.params, &tensors.params, "parameter", &dir)?;
        checkpoint::copy_into(&self.buffers, &tensors.buffers, "buffer", &dir)?;
        self.optimizer
            .load_state(&state.momentum_groups, tensors.optimizer)
            .with_context(|| format!("restoring optimizer state from {}", dir.display()))?;
        self.sampler
            .load_state(&state.sampler_state)
            .map_err(|e| self.sampler_origin.error("load_state", e))?;
        if let Some(generator) = self.generator.as_mut() {
            checkpoint::copy_into(
                &generator.params,
                &tensors.generator_params,
                "generator parameter",
                &dir,
            )?;
            generator
                .optimizer
                .load_state(&[0], tensors.generator_optimizer)
                .with_context(|| format!("restoring generator optimizer from {}", dir.display()))?;
            let saved = state.generator_state.as_deref().with_context(|| {
                format!(
                    "--resume: the checkpoint in {} has no generator state",
                    dir.display()
                )
            })?;
            generator
                .client
                .load_state(saved)
                .map_err(|e| generator.origin.error("load_state", e))?;
        }
        self.optimizer.set_updates(state.optimizer_updates);
        self.step = state.step;
        self.batches_consumed = state.batches_consumed;
        Ok(())
    }

    fn save_checkpoint(&self) -> Result<PathBuf> {
        let state = CheckpointState {
            step: self.step,
            batches_consumed: self.batches_consumed,
            sampler_state: self
                .sampler
                .save_state()
                .map_err(|e| self.sampler_origin.error("save_state", e))?,
            momentum_groups: self.optimizer.group_ids(),
            optimizer_updates: self.optimizer.updates(),
            config_hash: self.config.trajectory_hash(),
            sdk_version: nas_sdk::SDK_VERSION.to_string(),
            generator_state: match &self.generator {
                Some(generator) => Some(
                    generator
                        .client
                        .save_state()
                        .map_err(|e| generator.origin.error("save_state", e))?,
                ),
                None => None,
            },
            world_size: (self.world_size() > 1).then_some(self.world_size() as u64),
        };
        let tensors = CheckpointTensors {
            params: self
                .params
                .iter()
                .map(|(n, t)| (n.clone(), t.shallow_clone()))
                .collect(),
            buffers: self
                .buffers
                .iter()
                .map(|(n, t)| (n.clone(), t.shallow_clone()))
                .collect(),
            optimizer: self.optimizer.state(),
            generator_params: self
                .generator
                .iter()
                .flat_map(|g| g.params.iter())
                .map(|(n, t)| (n.clone(), t.shallow_clone()))
                .collect(),
            generator_optimizer: self
                .generator
                .as_ref()
                .map(|g| g.optimizer.state())
                .unwrap_or_default(),
        };
        checkpoint::save(
            &self.run_dir,
            &state,
            &tensors,
            self.config.train.keep_checkpoints,
        )
    }

    fn write_run_files(&self) -> Result<()> {
        crate::io::write_atomic(
            &self.run_dir.join("config.toml"),
            self.config.to_toml().as_bytes(),
        )?;
        let manifest = RunManifest {
            space: &self.space.origin,
            space_config: serde_json::from_str(&self.space.config_json).unwrap_or_default(),
            sampler: &self.sampler_origin,
            generator: self.generator.as_ref().map(|g| &g.origin),
            data: &self.data.info,
            device: crate::device::name(self.device),
            total_steps: self.total_steps,
            steps_per_epoch: self.steps_per_epoch,
            sdk_version: nas_sdk::SDK_VERSION,
            libtorch_version: nas_sdk::LIBTORCH_VERSION,
            world_size: self.world_size(),
        };
        crate::io::write_json_atomic(&self.run_dir.join("run.json"), &manifest)
    }

    fn check_plan(&self, plan: &StepPlan) -> Result<()> {
        if plan.paths.is_empty() {
            bail!(
                "sampler `{}` planned step {} with no path",
                self.sampler_origin.name,
                self.step
            );
        }
        for (k, path) in plan.paths.iter().enumerate() {
            if let PathArch::Fixed(arch) = &path.arch {
                arch.validate(&self.space.decisions).map_err(|msg| {
                    anyhow::anyhow!(
                        "sampler `{}` planned an invalid arch for path {k} of step {}: {msg}",
                        self.sampler_origin.name,
                        self.step
                    )
                })?;
            }
            if k == 0 && matches!(path.loss, LossKind::DistillFromFirst { .. }) {
                bail!(
                    "sampler `{}`: path 0 cannot distill from itself",
                    self.sampler_origin.name
                );
            }
            if !path.loss_scale.is_finite() {
                bail!(
                    "sampler `{}`: non-finite loss scale",
                    self.sampler_origin.name
                );
            }
        }
        Ok(())
    }

    /// Runs one step; returns its record and where its time went.
    fn run_step(&mut self) -> Result<(StepRecord, StepTimings)> {
        let started = Instant::now();
        let mut timings = StepTimings::default();
        let mut mark = Instant::now();
        let mut lap = |slot: &mut f64| {
            let now = Instant::now();
            *slot += (now - mark).as_secs_f64();
            mark = now;
        };
        let info = StepInfo {
            step: self.step,
            total_steps: self.total_steps,
            epoch: self.step / self.steps_per_epoch,
            steps_per_epoch: self.steps_per_epoch,
        };
        let plan = self
            .sampler
            .plan(&info)
            .map_err(|e| self.sampler_origin.error("plan", e))?;
        self.check_plan(&plan)?;
        let scheduled = self.schedule.at(self.step);
        let lr = match plan.lr {
            LrOverride::Schedule => scheduled,
            LrOverride::Scale(factor) => scheduled * factor,
            LrOverride::Absolute(value) => value,
        };
        if !(lr.is_finite() && lr >= 0.0) {
            bail!(
                "step {}: learning rate {lr} is not a finite non-negative number",
                self.step
            );
        }
        tch::manual_seed(step_seed(self.config.run.seed, self.step));
        lap(&mut timings.host);

        let batch_count = plan.paths.iter().map(|p| p.batch).max().unwrap_or(0) as u64 + 1;
        let batches: Vec<(Tensor, Tensor)> = (0..batch_count)
            .map(|b| {
                self.batches
                    .batch(&self.data.train, self.batches_consumed + b)
            })
            .collect();
        self.batches_consumed += batch_count;
        lap(&mut timings.data);

        self.optimizer.zero_grad();
        if let Some(generator) = self.generator.as_mut() {
            generator.zero_grad();
        }
        lap(&mut timings.optimizer);
        let mut active: Vec<usize> = Vec::new();
        let mut teacher: Option<Tensor> = None;
        let mut records = Vec::new();
        let mut archs = Vec::new();
        let mut losses = Vec::new();
        let mut images = 0usize;
        let mut generated_any = false;
        for (k, path) in plan.paths.iter().enumerate() {
            let (arch, gates, extra_loss, target) = match &path.arch {
                PathArch::Fixed(arch) => (arch.clone(), Vec::new(), None, None),
                PathArch::Generate { target } => {
                    let Some(generator) = self.generator.as_mut() else {
                        bail!(
                            "sampler `{}` asked for a generated arch, but this run configures no generator (set `generator.name`, e.g. \"shiftnas\" or \"random\")",
                            self.sampler_origin.name
                        );
                    };
                    if !target.is_finite() {
                        bail!(
                            "sampler `{}` asked for a generated arch at target {target} (not finite)",
                            self.sampler_origin.name
                        );
                    }
                    let (_, generation) = generator.generate(*target, GenerateMode::Sample)?;
                    generation
                        .arch
                        .validate(&self.space.decisions)
                        .map_err(|msg| {
                            anyhow::anyhow!(
                                "generator `{}` produced an invalid arch at step {}: {msg}",
                                generator.origin.name,
                                self.step
                            )
                        })?;
                    generated_any = true;
                    (
                        generation.arch,
                        generation.gates,
                        generation.extra_loss,
                        Some(*target),
                    )
                }
            };
            let (inputs, labels) = &batches[path.batch as usize];
            images += labels.size()[0] as usize;
            let options = ForwardOptions {
                train: path.regularize,
                ..ForwardOptions::TRAIN
            };
            lap(&mut timings.host);
            let gates = (!gates.is_empty()).then_some(gates.as_slice());
            let logits = self
                .space
                .client
                .forward(inputs, &arch, gates, &options)
                .map_err(|e| self.space.origin.error("forward", e))?;
            let loss = crate::loss::path_loss(path.loss, &logits, labels, teacher.as_ref())?;
            let value = loss.double_value(&[]);
            if !value.is_finite() {
                bail!(
                    "training diverged at step {} (path {k} loss is {value}); lower optim.lr or enable clipping (optim.clip)",
                    self.step
                );
            }
            let generator_loss = extra_loss.as_ref().map(|l| l.double_value(&[]));
            if let Some(extra) = generator_loss.filter(|v| !v.is_finite()) {
                bail!(
                    "the generator's extra loss is {extra} at step {} (not finite); lower generator.lr",
                    self.step
                );
            }
            let total = match &extra_loss {
                Some(extra) => &loss + extra,
                None => loss,
            };
            (&total * path.loss_scale).backward();
            if k == 0 {
                teacher = Some(logits.shallow_clone());
            }
            lap(&mut timings.compute);
            active.extend(
                self.space
                    .client
                    .active_parameters(&arch)
                    .map_err(|e| self.space.origin.error("active_parameters", e))?,
            );
            let complexity = self
                .space
                .complexity(&arch)
                .map_err(|e| self.space.origin.error("complexity", e))?;
            records.push(PathRecord {
                arch: self.space.arch_text(&arch)?,
                choices: arch.choices().to_vec(),
                loss: value,
                macs: complexity.macs,
                params: complexity.params,
                target,
                generator_loss,
            });
            archs.push(arch);
            losses.push(value);
        }
        active.sort_unstable();
        active.dedup();
        lap(&mut timings.host);
        if let Some(dist) = &self.dist {
            // One exchange per step: the updated parameters' gradients (and the generator's),
            // averaged, so every rank applies the update a single process would.
            let mut synced: Vec<Tensor> = self
                .optimizer
                .updated(&active)
                .into_iter()
                .map(|i| self.params[i].1.shallow_clone())
                .collect();
            if generated_any {
                if let Some(generator) = &self.generator {
                    synced.extend(generator.params.iter().map(|(_, t)| t.shallow_clone()));
                }
            }
            dist.average_gradients(&synced)?;
            // The sampler's feedback and the log see the global batch's losses.
            let mean = dist.average(&losses)?;
            for (record, value) in records.iter_mut().zip(&mean) {
                record.loss = *value;
            }
            losses = mean;
            images *= dist.world_size();
            lap(&mut timings.sync);
        }
        // Eq. 8 of ShiftNAS needs w_{t-1}: a copy only for the steps that ask for it.
        let previous: Option<Vec<Tensor>> = plan
            .keep_previous_weights
            .then(|| tch::no_grad(|| self.params.iter().map(|(_, p)| p.copy()).collect()));
        let grad_norm = self.optimizer.step(&active, plan.momentum_group, lr);
        if generated_any {
            if let Some(generator) = self.generator.as_mut() {
                generator.step();
            }
        }
        lap(&mut timings.optimizer);
        if let Some(dist) = &self.dist {
            // Running BN statistics come from each rank's slice; rank 0's are kept, as PyTorch's
            // DDP does, so every rank (and a checkpoint) holds the same buffers.
            if !self.buffers.is_empty() {
                let buffers: Vec<Tensor> = self
                    .buffers
                    .iter()
                    .map(|(_, t)| t.shallow_clone())
                    .collect();
                dist.broadcast_from_rank0(&buffers)?;
            }
            lap(&mut timings.sync);
        }
        let probes = self.run_probes(&plan, previous.as_deref())?;
        lap(&mut timings.compute);

        self.sampler
            .observe(&StepFeedback {
                step: self.step,
                archs: archs.into(),
                losses: losses.clone().into(),
                lr,
                probes: probes.clone().into(),
            })
            .map_err(|e| self.sampler_origin.error("observe", e))?;
        let report = if plan.report.is_empty() {
            None
        } else {
            Some(
                serde_json::from_str::<serde_json::Value>(plan.report.as_str()).with_context(
                    || {
                        format!(
                            "sampler `{}` reported something that is not JSON at step {}",
                            self.sampler_origin.name, self.step
                        )
                    },
                )?,
            )
        };
        let elapsed = started.elapsed().as_secs_f64().max(1e-9);
        let record = StepRecord {
            step: self.step,
            epoch: info.epoch,
            lr,
            loss: losses.iter().sum::<f64>() / losses.len() as f64,
            momentum_group: plan.momentum_group,
            grad_norm,
            images_per_s: images as f64 / elapsed,
            paths: records,
            probes: probes
                .iter()
                .map(|p| ProbeRecord {
                    target: p.target,
                    loss_after: p.loss_after,
                    loss_before: p.loss_before,
                    grad_after: p.grad_after,
                    grad_before: p.grad_before,
                })
                .collect(),
            sampler: report,
        };
        self.step += 1;
        lap(&mut timings.host);
        timings.total = started.elapsed().as_secs_f64();
        Ok((record, timings))
    }

    /// Answers the plan's held-out probes (after the update, with the weights kept from before).
    fn run_probes(
        &mut self,
        plan: &StepPlan,
        previous: Option<&[Tensor]>,
    ) -> Result<Vec<HeldoutProbe>> {
        if plan.probes.is_empty() {
            return Ok(Vec::new());
        }
        let sampler = &self.sampler_origin.name;
        let Some(previous) = previous else {
            bail!("sampler `{sampler}` asked for held-out probes at step {} without keep_previous_weights", self.step);
        };
        let Some(generator) = self.generator.as_mut() else {
            bail!("sampler `{sampler}` asked for held-out probes, but this run configures no generator (set `generator.name`)");
        };
        if self.data.holdout.is_empty() {
            bail!("sampler `{sampler}` updates from held-out data, but the run has none: set `data.holdout` (e.g. 2000 images carved from the training split)");
        }
        // One held-out batch per step, drawn from a stream of (seed, step), shared by every
        // probe of the step and by both weight snapshots.
        let count = self
            .config
            .generator
            .probe_batch_size
            .min(self.data.holdout.len());
        let order = crate::data::epoch_order(
            self.data.holdout.len(),
            self.config.run.seed ^ 0x5eed_90be,
            self.step,
        );
        let (images, labels) = self.data.holdout.gather(&order[..count]);
        plan.probes
            .iter()
            .map(|&target| {
                generator
                    .probe(
                        &self.space,
                        &self.params,
                        previous,
                        target,
                        &images,
                        &labels,
                    )
                    .with_context(|| format!("held-out probe of step {}", self.step))
            })
            .collect()
    }

    /// Runs `steps` steps without writing anything (for `nas bench`); returns their timings.
    pub fn bench_steps(&mut self, steps: u64) -> Result<Vec<StepTimings>> {
        (0..steps)
            .map(|_| self.run_step().map(|(_, t)| t))
            .collect()
    }

    /// Trains to the end (or until `stop` says so); writes metrics, checkpoints and plots.
    ///
    /// In a data-parallel run every rank trains, and rank 0 alone writes the run folder.
    pub fn run(&mut self, stop: StopPolicy, progress: Progress) -> Result<TrainSummary> {
        let writes = self.writes_outputs();
        let metrics_path = self.run_dir.join("metrics.jsonl");
        let mut metrics = if writes {
            std::fs::create_dir_all(&self.run_dir)
                .with_context(|| format!("creating run folder {}", self.run_dir.display()))?;
            self.write_run_files()?;
            Some(MetricsWriter::open(&metrics_path, self.step)?)
        } else {
            None
        };
        let mut rank_metrics = match &self.dist {
            Some(dist) if !writes && self.config.train.rank_metrics => {
                let dir = self.run_dir.join("ranks");
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                let path = dir.join(format!("metrics-rank{}.jsonl", dist.rank()));
                Some(MetricsWriter::open(&path, self.step)?)
            }
            _ => None,
        };
        let progress = if writes { progress } else { Progress::Silent };

        let start_step = self.step;
        let bar = progress_bar(self.total_steps, start_step, progress == Progress::Bar);
        let started = Instant::now();
        let mut last_loss = f64::NAN;
        let mut recent_images = 0.0;
        let every = self.config.train.checkpoint_every;
        let log_every = (self.total_steps / 20).max(1);
        let mut interrupted = false;
        let (mut step_seconds, mut sync_seconds) = (0.0, 0.0);
        while self.step < self.total_steps {
            if let Some(limit) = stop.after_steps {
                if self.step - start_step >= limit {
                    break;
                }
            }
            let mut stop_now = stop
                .interrupt
                .as_ref()
                .is_some_and(|flag| flag.load(Ordering::SeqCst));
            if let Some(dist) = &self.dist {
                // Every rank must leave at the same step, whichever got the signal.
                stop_now = dist.any(stop_now)?;
            }
            if stop_now {
                interrupted = true;
                break;
            }
            let (record, timings) = match self.run_step() {
                Ok(done) => done,
                Err(err) => {
                    bar.abandon();
                    if let Some(metrics) = metrics.as_mut() {
                        metrics.flush()?;
                    }
                    let kept = match checkpoint::latest(&self.run_dir) {
                        Ok(Some(dir)) => format!(
                            "the last checkpoint is {} (continue with `nas train --resume {}`)",
                            dir.display(),
                            self.run_dir.display()
                        ),
                        _ => "no checkpoint was written yet".to_string(),
                    };
                    return Err(
                        err.context(format!("training stopped at step {}; {kept}", self.step))
                    );
                }
            };
            if let Some(metrics) = metrics.as_mut().or(rank_metrics.as_mut()) {
                metrics.write(&record)?;
            }
            step_seconds += timings.total;
            sync_seconds += timings.sync;
            last_loss = record.loss;
            recent_images += record.images_per_s;
            bar.set_position(self.step);
            bar.set_message(format!(
                "loss {:.4}  lr {:.4}  {:.0} img/s",
                record.loss, record.lr, record.images_per_s
            ));
            if progress == Progress::Lines
                && (self.step.is_multiple_of(log_every) || self.step == self.total_steps)
            {
                eprintln!(
                    "step {}/{}  loss {:.4}  lr {:.5}  {:.0} img/s",
                    self.step, self.total_steps, record.loss, record.lr, record.images_per_s
                );
            }
            if every > 0 && self.step.is_multiple_of(every) && self.step < self.total_steps {
                self.check_ranks_agree()?;
                if let Some(metrics) = metrics.as_mut() {
                    metrics.flush()?;
                    self.save_checkpoint()?;
                }
            }
        }
        bar.finish_and_clear();
        self.check_ranks_agree()?;
        let steps_run = self.step - start_step;
        let summary = TrainSummary {
            run_dir: self.run_dir.clone(),
            interrupted,
            checkpoint: checkpoint::step_dir(&self.run_dir, self.step),
            steps_run,
            step: self.step,
            total_steps: self.total_steps,
            final_loss: last_loss,
            seconds: started.elapsed().as_secs_f64(),
            mean_images_per_s: if steps_run > 0 {
                recent_images / steps_run as f64
            } else {
                0.0
            },
            world_size: self.world_size(),
            sync_share: if step_seconds > 0.0 {
                sync_seconds / step_seconds
            } else {
                0.0
            },
        };
        let Some(mut metrics) = metrics else {
            if let Some(mut rank_metrics) = rank_metrics {
                rank_metrics.flush()?;
            }
            return Ok(summary);
        };
        metrics.flush()?;
        let checkpoint = self.save_checkpoint()?;
        let records = metrics::read(&metrics_path)?;
        metrics::plot_loss(&records, &self.run_dir.join("plots/loss.svg"))?;
        metrics::plot_complexity_phases(&records, &self.run_dir.join("plots/complexity.svg"))?;
        metrics::plot_distribution(&records, &self.run_dir.join("plots/distribution.svg"))?;
        if let Some(generator) = &self.generator {
            metrics::plot_generator_targets(
                &records,
                generator.metric,
                &self.run_dir.join("plots/generator.svg"),
            )?;
        }
        Ok(TrainSummary {
            checkpoint,
            ..summary
        })
    }
}

fn progress_bar(total: u64, position: u64, show: bool) -> ProgressBar {
    let target = if show {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(total), target);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} step {pos}/{len} {wide_bar} {msg} [{elapsed_precise} < {eta_precise}]",
        )
        .expect("valid template"),
    );
    bar.set_position(position);
    bar
}

/// Refuses a sampler and generator that measure targets in different metrics.
fn check_metrics_agree(
    catalog: &SharedCatalog,
    config: &RunConfig,
    generator: &RunGenerator,
) -> Result<()> {
    let defaults = catalog
        .borrow_mut()
        .resolve(nas_sdk::ComponentKind::Sampler, &config.sampler.name)?
        .1
        .default_config
        .to_string();
    let has_metric = |text: &str| {
        serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .is_some_and(|v| v.get("metric").is_some())
    };
    let sampler_json = config.sampler.config_json();
    if !(has_metric(&defaults) || has_metric(&sampler_json)) {
        return Ok(());
    }
    let sampler_metric = crate::generator::configured_metric(&defaults, &sampler_json)?;
    if sampler_metric != generator.metric {
        bail!(
            "config: sampler `{}` draws targets in {:?} but generator `{}` reads them as {:?}; set the same `metric` in [sampler.config] and [generator.config]",
            config.sampler.name,
            sampler_metric,
            generator.origin.name,
            generator.metric
        );
    }
    Ok(())
}

/// Where one step's wall time went, in seconds.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct StepTimings {
    /// Host code: planning, checks, bookkeeping, metrics (no libtorch kernels of note).
    pub host: f64,
    /// Gathering the step's batches.
    pub data: f64,
    /// Forward, loss and backward passes (libtorch kernels, through the space plugin).
    pub compute: f64,
    /// Zeroing gradients and the optimizer update.
    pub optimizer: f64,
    /// Exchanges with the other ranks of a data-parallel run (gradients, losses, buffers).
    pub sync: f64,
    /// The whole step.
    pub total: f64,
}

/// What a training invocation did.
#[derive(Debug, Serialize)]
pub struct TrainSummary {
    /// Stopped early by an interrupt (a checkpoint was written).
    pub interrupted: bool,
    /// The run folder.
    pub run_dir: PathBuf,
    /// The checkpoint written at the end.
    pub checkpoint: PathBuf,
    /// Steps run by this invocation.
    pub steps_run: u64,
    /// Steps completed in total.
    pub step: u64,
    /// Steps of the whole run.
    pub total_steps: u64,
    /// Loss of the last step.
    pub final_loss: f64,
    /// Wall time of this invocation.
    pub seconds: f64,
    /// Mean training throughput (of all ranks together).
    pub mean_images_per_s: f64,
    /// Processes that trained (1 when not distributed).
    pub world_size: usize,
    /// Share of step time spent exchanging with the other ranks (0 when alone).
    pub sync_share: f64,
}

/// The run folder for `config`.
pub fn run_dir(config: &RunConfig) -> PathBuf {
    config.run.out_dir.join(&config.run.name)
}

/// Loads a run folder's latest checkpoint weights into a freshly built space.
pub fn load_weights(space: &Space, run_dir: &Path) -> Result<PathBuf> {
    let dir = checkpoint::latest(run_dir)?.with_context(|| {
        format!(
            "{} has no checkpoint (train it with `nas train` first)",
            run_dir.display()
        )
    })?;
    let (_, tensors) = checkpoint::load(&dir)?;
    checkpoint::copy_into(&space.parameters()?, &tensors.params, "parameter", &dir)?;
    checkpoint::copy_into(&space.buffers()?, &tensors.buffers, "buffer", &dir)?;
    Ok(dir)
}
