//! One training step as a pipeline of named stages:
//!
//! ```text
//! plan -> check -> batches -> forward/backward per path -> reduce across ranks -> update
//!      -> probes -> feedback
//! ```
//!
//! Each stage is one method below, in that order. A step's wall time is split into
//! [`StepTimings`] slots as it goes (`nas bench` reports them).

use std::time::Instant;

use anyhow::{bail, Context, Result};
use nas_sdk::{
    Arch, ForwardOptions, GenerateMode, HeldoutProbe, LossKind, LrOverride, PathArch, PathPlan,
    StepFeedback, StepInfo, StepPlan,
};
use serde::Serialize;
use tch::Tensor;

use super::{loss::path_loss, trainer::step_seed, Trainer};
use crate::run::metrics::{PathRecord, ProbeRecord, StepRecord};

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

/// A stopwatch that adds the time since its last lap to one [`StepTimings`] slot.
struct Laps {
    mark: Instant,
    timings: StepTimings,
}

impl Laps {
    fn start() -> Self {
        Laps {
            mark: Instant::now(),
            timings: StepTimings::default(),
        }
    }

    fn lap(&mut self, slot: fn(&mut StepTimings) -> &mut f64) {
        let now = Instant::now();
        *slot(&mut self.timings) += (now - self.mark).as_secs_f64();
        self.mark = now;
    }
}

/// What the paths of one step left behind: the union of their active parameters and what the
/// sampler and the log are told.
struct PathsDone {
    active: Vec<usize>,
    records: Vec<PathRecord>,
    archs: Vec<Arch>,
    losses: Vec<f64>,
    images: usize,
    generated_any: bool,
}

/// The arch one path trains, with what a generated arch brings along.
struct PathArchitecture {
    arch: Arch,
    gates: Vec<Tensor>,
    extra_loss: Option<Tensor>,
    target: Option<f64>,
}

impl Trainer {
    /// Runs one step; returns its record and where its time went.
    pub(super) fn run_step(&mut self) -> Result<(StepRecord, StepTimings)> {
        let started = Instant::now();
        let mut laps = Laps::start();
        let (info, plan, lr) = self.plan()?;
        laps.lap(|t| &mut t.host);
        let (batches, skipped_images) = self.draw_batches(&plan)?;
        laps.lap(|t| &mut t.data);
        self.zero_grad();
        laps.lap(|t| &mut t.optimizer);
        let mut paths = self.forward_backward(&plan, &batches, &mut laps)?;
        laps.lap(|t| &mut t.host);
        if self.dist.is_some() {
            self.reduce_across_ranks(&mut paths)?;
            laps.lap(|t| &mut t.sync);
        }
        // Eq. 8 of ShiftNAS needs w_{t-1}: a copy only for the steps that ask for it.
        let previous: Option<Vec<Tensor>> = plan
            .keep_previous_weights
            .then(|| tch::no_grad(|| self.params.iter().map(|(_, p)| p.copy()).collect()));
        let grad_norm = self.update(&plan, &paths, lr);
        laps.lap(|t| &mut t.optimizer);
        if self.dist.is_some() {
            self.share_buffers()?;
            laps.lap(|t| &mut t.sync);
        }
        let probes = self.run_probes(&plan, previous.as_deref())?;
        laps.lap(|t| &mut t.compute);
        let mut record = self.feedback(&info, &plan, lr, paths, probes, grad_norm, started)?;
        record.skipped_images = skipped_images;
        self.step += 1;
        laps.lap(|t| &mut t.host);
        laps.timings.total = started.elapsed().as_secs_f64();
        Ok((record, laps.timings))
    }

    /// Plan: the sampler's plan of this step, checked, with the step's learning rate; seeds
    /// libtorch's RNG for the step.
    fn plan(&mut self) -> Result<(StepInfo, StepPlan, f64)> {
        let info = StepInfo {
            step: self.step,
            total_steps: self.total_steps,
            epoch: self.step / self.steps_per_epoch,
            steps_per_epoch: self.steps_per_epoch,
        };
        let plan = self.sampler.plan(&info)?;
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
        Ok((info, plan, lr))
    }

    /// Check: refuses a plan the host cannot run, naming the sampler.
    fn check_plan(&self, plan: &StepPlan) -> Result<()> {
        let sampler = self.sampler.name();
        if plan.paths.is_empty() {
            bail!(
                "sampler `{sampler}` planned step {} with no path",
                self.step
            );
        }
        for (k, path) in plan.paths.iter().enumerate() {
            if let PathArch::Fixed(arch) = &path.arch {
                arch.validate(self.space.decisions()).map_err(|msg| {
                    anyhow::anyhow!(
                        "sampler `{sampler}` planned an invalid arch for path {k} of step {}: {msg}",
                        self.step
                    )
                })?;
            }
            if k == 0 && matches!(path.loss, LossKind::DistillFromFirst { .. }) {
                bail!("sampler `{sampler}`: path 0 cannot distill from itself");
            }
            if !path.loss_scale.is_finite() {
                bail!("sampler `{sampler}`: non-finite loss scale");
            }
        }
        Ok(())
    }

    /// Batches: the `max(batch) + 1` batches the plan's paths read, in the seeded order.
    /// Unreadable images are left out of their batch (`data.on_bad_image = "skip"`), warned
    /// about and counted in the step's record.
    fn draw_batches(&mut self, plan: &StepPlan) -> Result<(Vec<(Tensor, Tensor)>, u64)> {
        let batch_count = plan.paths.iter().map(|p| p.batch).max().unwrap_or(0) as u64 + 1;
        let mut batches = Vec::with_capacity(batch_count as usize);
        let mut skipped = 0;
        for b in 0..batch_count {
            let index = self.batches_consumed + b;
            let batch = self
                .loader
                .batch(&self.data.train, index)
                .with_context(|| format!("training batch {index} (step {})", self.step))?;
            for reason in &batch.skipped {
                eprintln!(
                    "warning: step {}: skipped a training image: {reason}",
                    self.step
                );
            }
            skipped += batch.skipped.len() as u64;
            batches.push((batch.images, batch.targets));
        }
        self.batches_consumed += batch_count;
        Ok((batches, skipped))
    }

    fn zero_grad(&mut self) {
        self.optimizer.zero_grad();
        if let Some(generator) = self.generator.as_mut() {
            generator.zero_grad();
        }
    }

    /// Forward/backward per path: gradients of every path accumulate (scaled by its loss
    /// scale); path 0's logits are the teacher of distilling paths.
    fn forward_backward(
        &mut self,
        plan: &StepPlan,
        batches: &[(Tensor, Tensor)],
        laps: &mut Laps,
    ) -> Result<PathsDone> {
        let mut done = PathsDone {
            active: Vec::new(),
            records: Vec::new(),
            archs: Vec::new(),
            losses: Vec::new(),
            images: 0,
            generated_any: false,
        };
        let mut teacher: Option<Tensor> = None;
        for (k, path) in plan.paths.iter().enumerate() {
            let PathArchitecture {
                arch,
                gates,
                extra_loss,
                target,
            } = self.path_architecture(path)?;
            done.generated_any |= target.is_some();
            let (inputs, labels) = &batches[path.batch as usize];
            done.images += labels.size()[0] as usize;
            let options = ForwardOptions {
                train: path.regularize,
                ..ForwardOptions::TRAIN
            };
            laps.lap(|t| &mut t.host);
            let gates = (!gates.is_empty()).then_some(gates.as_slice());
            let logits = self.space.forward(inputs, &arch, gates, &options)?;
            let loss = path_loss(path.loss, &logits, labels, teacher.as_ref())?;
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
            laps.lap(|t| &mut t.compute);
            done.active.extend(self.space.active_parameters(&arch)?);
            let complexity = self.space.complexity(&arch)?;
            done.records.push(PathRecord {
                arch: self.space.arch_text(&arch)?,
                choices: arch.choices().to_vec(),
                loss: value,
                macs: complexity.macs,
                params: complexity.params,
                target,
                generator_loss,
            });
            done.archs.push(arch);
            done.losses.push(value);
        }
        done.active.sort_unstable();
        done.active.dedup();
        Ok(done)
    }

    /// The arch of one path: the plan's own, or the generator's for the path's target.
    fn path_architecture(&mut self, path: &PathPlan) -> Result<PathArchitecture> {
        let target = match &path.arch {
            PathArch::Fixed(arch) => {
                return Ok(PathArchitecture {
                    arch: arch.clone(),
                    gates: Vec::new(),
                    extra_loss: None,
                    target: None,
                })
            }
            PathArch::Generate { target } => *target,
        };
        let sampler = self.sampler.name();
        let Some(generator) = self.generator.as_mut() else {
            bail!(
                "sampler `{sampler}` asked for a generated arch, but this run configures no generator (set `generator.name`, e.g. \"shiftnas\" or \"random\")"
            );
        };
        if !target.is_finite() {
            bail!("sampler `{sampler}` asked for a generated arch at target {target} (not finite)");
        }
        let (_, generation) = generator.generate(target, GenerateMode::Sample)?;
        generation
            .arch
            .validate(self.space.decisions())
            .map_err(|msg| {
                anyhow::anyhow!(
                    "generator `{}` produced an invalid arch at step {}: {msg}",
                    generator.origin().name,
                    self.step
                )
            })?;
        Ok(PathArchitecture {
            arch: generation.arch,
            gates: generation.gates,
            extra_loss: generation.extra_loss,
            target: Some(target),
        })
    }

    /// Reduce across ranks: one exchange per step of the updated parameters' gradients (and
    /// the generator's), averaged, so every rank applies the update a single process would; the
    /// sampler's feedback and the log see the global batch's losses.
    fn reduce_across_ranks(&mut self, paths: &mut PathsDone) -> Result<()> {
        let Some(dist) = &self.dist else {
            return Ok(());
        };
        let mut synced: Vec<Tensor> = self
            .optimizer
            .updated(&paths.active)
            .into_iter()
            .map(|i| self.params[i].1.shallow_clone())
            .collect();
        if paths.generated_any {
            if let Some(generator) = &self.generator {
                synced.extend(generator.params.iter().map(|(_, t)| t.shallow_clone()));
            }
        }
        dist.average_gradients(&synced)?;
        let mean = dist.average(&paths.losses)?;
        for (record, value) in paths.records.iter_mut().zip(&mean) {
            record.loss = *value;
        }
        paths.losses = mean;
        paths.images *= dist.world_size();
        Ok(())
    }

    /// Update: one optimizer step over the union of the paths' active parameters with the plan's
    /// momentum group and LR, then the generator's own step; returns the gradient norm.
    fn update(&mut self, plan: &StepPlan, paths: &PathsDone, lr: f64) -> f64 {
        let grad_norm = self.optimizer.step(&paths.active, plan.momentum_group, lr);
        if paths.generated_any {
            if let Some(generator) = self.generator.as_mut() {
                generator.step();
            }
        }
        grad_norm
    }

    /// Running BN statistics come from each rank's slice; rank 0's are kept, as PyTorch's DDP
    /// does, so every rank (and a checkpoint) holds the same buffers.
    fn share_buffers(&self) -> Result<()> {
        let Some(dist) = &self.dist else {
            return Ok(());
        };
        if !self.buffers.is_empty() {
            let buffers: Vec<Tensor> = self
                .buffers
                .iter()
                .map(|(_, t)| t.shallow_clone())
                .collect();
            dist.broadcast_from_rank0(&buffers)?;
        }
        Ok(())
    }

    /// Probes: the plan's held-out probes, answered after the update with the weights kept
    /// from before it.
    fn run_probes(
        &mut self,
        plan: &StepPlan,
        previous: Option<&[Tensor]>,
    ) -> Result<Vec<HeldoutProbe>> {
        if plan.probes.is_empty() {
            return Ok(Vec::new());
        }
        let sampler = self.sampler.name();
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
        let (images, labels) = self.data.holdout.gather(&order[..count])?;
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

    /// Feedback: tells the sampler what the step did and builds the step's log record.
    #[allow(clippy::too_many_arguments)]
    fn feedback(
        &mut self,
        info: &StepInfo,
        plan: &StepPlan,
        lr: f64,
        paths: PathsDone,
        probes: Vec<HeldoutProbe>,
        grad_norm: f64,
        started: Instant,
    ) -> Result<StepRecord> {
        self.sampler.observe(&StepFeedback {
            step: self.step,
            archs: paths.archs.into(),
            losses: paths.losses.clone().into(),
            lr,
            probes: probes.clone().into(),
        })?;
        let report = if plan.report.is_empty() {
            None
        } else {
            Some(
                serde_json::from_str::<serde_json::Value>(plan.report.as_str()).with_context(
                    || {
                        format!(
                            "sampler `{}` reported something that is not JSON at step {}",
                            self.sampler.name(),
                            self.step
                        )
                    },
                )?,
            )
        };
        let elapsed = started.elapsed().as_secs_f64().max(1e-9);
        Ok(StepRecord {
            step: self.step,
            epoch: info.epoch,
            lr,
            loss: paths.losses.iter().sum::<f64>() / paths.losses.len() as f64,
            momentum_group: plan.momentum_group,
            grad_norm,
            images_per_s: paths.images as f64 / elapsed,
            paths: paths.records,
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
            skipped_images: 0,
        })
    }
}
