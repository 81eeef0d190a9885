//! A training run: its state (supernet, sampler, generator, optimizer, data order, step) and
//! how that state is built, synchronised across ranks, checkpointed and restored. The step
//! itself is in [`super::step`], the loop around it in [`super::runner`].

use std::{path::PathBuf, rc::Rc};

use anyhow::{bail, Context, Result};
use nas_sdk::RunInfo;
use serde::Serialize;
use tch::{Device, Tensor};

use super::{
    distributed::Distributed,
    generator::{check_metrics_agree, RunGenerator},
    optim::{LrSchedule, Optimizer},
};
use crate::{
    config::RunConfig,
    data::{BatchSource, DataInfo, Dataset, TrainLoader},
    plugins::{Origin, Sampler, Services, SharedCatalog, Space},
    run::checkpoint::{self, CheckpointState, CheckpointTensors},
};

/// A training run in progress.
pub struct Trainer {
    pub(super) config: RunConfig,
    pub(super) run_dir: PathBuf,
    pub(super) device: Device,
    pub(super) data: Dataset,
    pub(super) space: Rc<Space>,
    pub(super) sampler: Sampler,
    pub(super) generator: Option<RunGenerator>,
    pub(super) params: Vec<(String, Tensor)>,
    pub(super) buffers: Vec<(String, Tensor)>,
    pub(super) optimizer: Optimizer,
    pub(super) schedule: LrSchedule,
    pub(super) loader: TrainLoader,
    pub(super) total_steps: u64,
    pub(super) steps_per_epoch: u64,
    pub(super) step: u64,
    pub(super) batches_consumed: u64,
    /// The process group of a data-parallel run (`None`: this process trains alone).
    pub(super) dist: Option<Distributed>,
}

/// Written to `<run>/run.json`: what produced the run.
#[derive(Serialize)]
struct RunManifest<'a> {
    space: &'a Origin,
    space_config: serde_json::Value,
    sampler: &'a Origin,
    #[serde(skip_serializing_if = "Option::is_none")]
    generator: Option<&'a Origin>,
    data: &'a DataInfo,
    device: String,
    total_steps: u64,
    steps_per_epoch: u64,
    sdk_version: &'a str,
    libtorch_version: &'a str,
    world_size: usize,
}

/// libtorch's RNG seed for `step`, so stochastic layers replay exactly after a resume.
pub(super) fn step_seed(seed: u64, step: u64) -> i64 {
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
        let loader = TrainLoader::new(
            &data.train,
            batches,
            &data.info.augment,
            data.pipeline_settings(&config.data, config.run.seed),
            device,
        )?;
        let total_steps = config.train.total_steps(steps_per_epoch);
        let schedule = LrSchedule::new(&config.optim, total_steps);
        let optimizer = Optimizer::new(
            params.iter().map(|(_, t)| t.shallow_clone()).collect(),
            &config.optim,
        );

        let mut sampler = Sampler::create(&catalog, &config.sampler)?;
        let services = Services {
            run_info: RunInfo {
                seed: config.run.seed,
                total_steps,
                steps_per_epoch,
                rank: rank as u32,
                world_size: world_size as u32,
            },
            space: space.clone(),
            catalog: catalog.clone(),
        };
        let generator = if config.generator.name.is_empty() {
            None
        } else {
            tch::manual_seed(step_seed(config.run.seed, u64::MAX - 1));
            let generator =
                RunGenerator::create(&catalog, &config.generator, services.context(), device)?;
            check_metrics_agree(&catalog, &config, &generator)?;
            Some(generator)
        };
        // `start` always comes first; a resumed run then restores the sampler's state.
        sampler.start(services.context())?;

        let mut trainer = Trainer {
            config,
            run_dir,
            device,
            data,
            space,
            sampler,
            generator,
            params,
            buffers,
            optimizer,
            schedule,
            loader,
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
    pub(super) fn check_ranks_agree(&self) -> Result<()> {
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
    pub(super) fn writes_outputs(&self) -> bool {
        self.dist.as_ref().is_none_or(|d| d.rank() == 0)
    }

    /// Processes training together (1 when not distributed).
    pub(super) fn world_size(&self) -> usize {
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

    pub(super) fn restore(&mut self) -> Result<()> {
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
        self.sampler.load_state(&state.sampler_state)?;
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
            generator.plugin.load_state(saved)?;
        }
        self.optimizer.set_updates(state.optimizer_updates);
        self.step = state.step;
        self.batches_consumed = state.batches_consumed;
        Ok(())
    }

    pub(super) fn save_checkpoint(&self) -> Result<PathBuf> {
        let state = CheckpointState {
            step: self.step,
            batches_consumed: self.batches_consumed,
            sampler_state: self.sampler.save_state()?,
            momentum_groups: self.optimizer.group_ids(),
            optimizer_updates: self.optimizer.updates(),
            config_hash: self.config.trajectory_hash(),
            sdk_version: nas_sdk::SDK_VERSION.to_string(),
            generator_state: match &self.generator {
                Some(generator) => Some(generator.plugin.save_state()?),
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

    pub(super) fn write_run_files(&self) -> Result<()> {
        crate::run::io::write_atomic(
            &self.run_dir.join("config.toml"),
            self.config.to_toml().as_bytes(),
        )?;
        let manifest = RunManifest {
            space: self.space.origin(),
            space_config: serde_json::from_str(self.space.config_json()).unwrap_or_default(),
            sampler: self.sampler.origin(),
            generator: self.generator.as_ref().map(|g| g.origin()),
            data: &self.data.info,
            device: crate::device::name(self.device),
            total_steps: self.total_steps,
            steps_per_epoch: self.steps_per_epoch,
            sdk_version: nas_sdk::SDK_VERSION,
            libtorch_version: nas_sdk::LIBTORCH_VERSION,
            world_size: self.world_size(),
        };
        crate::run::io::write_json_atomic(&self.run_dir.join("run.json"), &manifest)
    }
}
