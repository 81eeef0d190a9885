//! The training loop around [`Trainer::run_step`]: progress, metrics, checkpoint cadence,
//! interrupts, and the plots written at the end.

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Instant,
};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use super::{step::StepTimings, Trainer};
use crate::{
    report::training,
    run::{
        checkpoint,
        metrics::{self, MetricsWriter},
    },
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

impl Trainer {
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
        let (mut data_seconds, mut host_seconds, mut skipped_images) = (0.0, 0.0, 0u64);
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
            data_seconds += timings.data;
            host_seconds += timings.host;
            skipped_images += record.skipped_images;
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
            sync_share: share(sync_seconds, step_seconds),
            data_share: share(data_seconds, step_seconds),
            host_share: share(host_seconds, step_seconds),
            skipped_images,
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
        training::plot_loss(&records, &self.run_dir.join("plots/loss.svg"))?;
        training::plot_complexity_phases(&records, &self.run_dir.join("plots/complexity.svg"))?;
        training::plot_distribution(&records, &self.run_dir.join("plots/distribution.svg"))?;
        if let Some(generator) = &self.generator {
            training::plot_generator_targets(
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
    /// Share of step time spent waiting for training batches.
    pub data_share: f64,
    /// Share of step time spent in host code (planning, bookkeeping, metrics).
    pub host_share: f64,
    /// Training images left out because they could not be read.
    pub skipped_images: u64,
}

fn share(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        part / whole
    } else {
        0.0
    }
}
