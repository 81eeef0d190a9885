//! SGD over shared supernet weights with momentum groups, the inactive-parameter rule, gradient
//! clipping, and the learning-rate schedule.
//!
//! The update is PyTorch's `torch.optim.SGD` (dampening 0): `d = g + wd * w`; the momentum buffer
//! is `d` on its first use and `m * buf + d` after; the step is `buf` (or `d + m * buf` with
//! Nesterov); `w -= lr * step`. A momentum group is a full set of buffers over the same weights
//! (DYNAS momentum separation); a step uses and updates only its group's buffers.

use std::collections::BTreeMap;

use tch::{Kind, Tensor};

use crate::config::{ClipKind, InactiveRule, OptimSection, Schedule};

/// The learning rate at a global step.
#[derive(Clone, Debug, PartialEq)]
pub struct LrSchedule {
    /// Peak learning rate.
    pub lr: f64,
    /// Final learning rate.
    pub min_lr: f64,
    /// Shape after warm-up.
    pub schedule: Schedule,
    /// Warm-up steps.
    pub warmup_steps: u64,
    /// Learning rate at step 0 of the warm-up.
    pub warmup_start_lr: f64,
    /// Total steps of the run.
    pub total_steps: u64,
}

impl LrSchedule {
    /// The schedule of `optim` over `total_steps`.
    pub fn new(optim: &OptimSection, total_steps: u64) -> Self {
        LrSchedule {
            lr: optim.lr,
            min_lr: optim.min_lr,
            schedule: optim.schedule,
            warmup_steps: optim.warmup_steps,
            warmup_start_lr: optim.warmup_start_lr,
            total_steps,
        }
    }

    /// The learning rate of step `step` (0-based).
    pub fn at(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            let progress = step as f64 / self.warmup_steps as f64;
            return self.warmup_start_lr + (self.lr - self.warmup_start_lr) * progress;
        }
        let span = self.total_steps.saturating_sub(self.warmup_steps).max(1) as f64;
        let progress = ((step - self.warmup_steps) as f64 / span).min(1.0);
        match self.schedule {
            Schedule::Constant => self.lr,
            Schedule::Linear => self.min_lr + (self.lr - self.min_lr) * (1.0 - progress),
            Schedule::Cosine => {
                self.min_lr
                    + (self.lr - self.min_lr)
                        * 0.5
                        * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }
}

/// SGD with momentum groups over a fixed list of parameters.
pub struct Sgd {
    params: Vec<Tensor>,
    momentum: f64,
    nesterov: bool,
    weight_decay: f64,
    inactive: InactiveRule,
    clip: ClipKind,
    clip_value: f64,
    /// `groups[g][i]`: momentum buffer of parameter `i` in group `g` (None until first used).
    groups: BTreeMap<u32, Vec<Option<Tensor>>>,
    updates: u64,
}

impl Sgd {
    /// An optimizer over `params` (shallow handles of the supernet's parameters).
    pub fn new(params: Vec<Tensor>, optim: &OptimSection) -> Self {
        Sgd {
            params,
            momentum: optim.momentum,
            nesterov: optim.nesterov,
            weight_decay: optim.weight_decay,
            inactive: optim.inactive,
            clip: optim.clip,
            clip_value: optim.clip_value,
            groups: BTreeMap::new(),
            updates: 0,
        }
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.params.len()
    }

    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    /// Updates applied so far.
    pub fn updates(&self) -> u64 {
        self.updates
    }

    /// Restores the update count from a checkpoint.
    pub fn set_updates(&mut self, updates: u64) {
        self.updates = updates;
    }

    /// Zeroes every defined gradient.
    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.zero_grad();
        }
    }

    /// The parameter indices a step with these `active` indices updates.
    fn updated(&self, active: &[usize]) -> Vec<usize> {
        match self.inactive {
            InactiveRule::Exclude => active.to_vec(),
            InactiveRule::Include => (0..self.params.len()).collect(),
        }
    }

    /// Clips the gradients of `indices`; returns the global gradient norm before clipping.
    fn clip(&self, indices: &[usize]) -> f64 {
        let grads: Vec<Tensor> = indices
            .iter()
            .map(|&i| self.params[i].grad())
            .filter(|g| g.defined())
            .collect();
        if grads.is_empty() {
            return 0.0;
        }
        let norms: Vec<Tensor> = grads.iter().map(|g| g.norm().view([1])).collect();
        let total = Tensor::cat(&norms, 0).norm().double_value(&[]);
        tch::no_grad(|| match self.clip {
            ClipKind::None => {}
            ClipKind::Norm => {
                let scale = self.clip_value / (total + 1e-6);
                if scale < 1.0 {
                    for g in &grads {
                        let _ = g.shallow_clone().g_mul_scalar_(scale);
                    }
                }
            }
            ClipKind::Value => {
                for g in &grads {
                    let _ = g.shallow_clone().clamp_(-self.clip_value, self.clip_value);
                }
            }
        });
        total
    }

    /// One update of the parameters `active` (indices; see [`InactiveRule`]) with momentum
    /// group `group` at learning rate `lr`. Returns the gradient norm before clipping.
    pub fn step(&mut self, active: &[usize], group: u32, lr: f64) -> f64 {
        let indices = self.updated(active);
        let grad_norm = self.clip(&indices);
        let buffers = self
            .groups
            .entry(group)
            .or_insert_with(|| (0..self.params.len()).map(|_| None).collect());
        tch::no_grad(|| {
            for &i in &indices {
                let param = &self.params[i];
                let grad = param.grad();
                let mut direction = if grad.defined() {
                    grad.shallow_clone()
                } else {
                    param.zeros_like()
                };
                if self.weight_decay != 0.0 {
                    direction = &direction + param * self.weight_decay;
                }
                if self.momentum != 0.0 {
                    let buffer = match &buffers[i] {
                        None => direction.detach().copy(),
                        Some(buffer) => {
                            let mut buffer = buffer.shallow_clone();
                            let _ = buffer.g_mul_scalar_(self.momentum).g_add_(&direction);
                            buffer
                        }
                    };
                    direction = if self.nesterov {
                        &direction + &buffer * self.momentum
                    } else {
                        buffer.shallow_clone()
                    };
                    buffers[i] = Some(buffer);
                }
                let _ = param.shallow_clone().g_add_(&(direction * -lr));
            }
        });
        self.updates += 1;
        grad_norm
    }

    /// Momentum buffers for a checkpoint: `(group, parameter index, buffer)`.
    pub fn state(&self) -> Vec<(u32, usize, Tensor)> {
        let mut state = Vec::new();
        for (&group, buffers) in &self.groups {
            for (i, buffer) in buffers.iter().enumerate() {
                if let Some(buffer) = buffer {
                    state.push((group, i, buffer.shallow_clone()));
                }
            }
        }
        state
    }

    /// Groups that exist (have been used), including those without any buffer yet.
    pub fn group_ids(&self) -> Vec<u32> {
        self.groups.keys().copied().collect()
    }

    /// Restores [`Sgd::state`] (and the list of existing groups).
    pub fn load_state(
        &mut self,
        groups: &[u32],
        state: Vec<(u32, usize, Tensor)>,
    ) -> anyhow::Result<()> {
        self.groups.clear();
        for &group in groups {
            self.groups
                .insert(group, (0..self.params.len()).map(|_| None).collect());
        }
        for (group, index, buffer) in state {
            let buffers = self.groups.get_mut(&group).ok_or_else(|| {
                anyhow::anyhow!("checkpoint has a momentum buffer for unknown group {group}")
            })?;
            let param = self.params.get(index).ok_or_else(|| {
                anyhow::anyhow!(
                    "checkpoint has a momentum buffer for parameter {index}, the supernet has {}",
                    buffers.len()
                )
            })?;
            if param.size() != buffer.size() {
                anyhow::bail!(
                    "checkpoint momentum buffer {group}/{index} has shape {:?}, parameter has {:?}",
                    buffer.size(),
                    param.size()
                );
            }
            buffers[index] = Some(buffer.to_device(param.device()).to_kind(Kind::Float));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn optim(momentum: f64, nesterov: bool, weight_decay: f64) -> OptimSection {
        OptimSection {
            momentum,
            nesterov,
            weight_decay,
            ..OptimSection::default()
        }
    }

    fn param(values: &[f32]) -> Tensor {
        Tensor::from_slice(values).set_requires_grad(true)
    }

    fn set_grad(p: &Tensor, values: &[f32]) {
        let loss = (p * Tensor::from_slice(values)).sum(Kind::Float);
        loss.backward();
    }

    #[test]
    fn matches_hand_computed_nesterov_sgd() {
        let w = param(&[1.0]);
        let mut sgd = Sgd::new(vec![w.shallow_clone()], &optim(0.9, true, 0.1));
        // step 1: d = 2 + 0.1*1 = 2.1; buf = 2.1; step = 2.1 + 0.9*2.1 = 3.99; w = 1 - 0.5*3.99
        set_grad(&w, &[2.0]);
        sgd.step(&[0], 0, 0.5);
        let w1 = 1.0 - 0.5 * 3.99;
        assert!((w.double_value(&[0]) - w1).abs() < 1e-6);
        // step 2: d = 1 + 0.1*w1; buf = 0.9*2.1 + d; step = d + 0.9*buf
        sgd.zero_grad();
        set_grad(&w, &[1.0]);
        sgd.step(&[0], 0, 0.5);
        let d: f64 = 1.0 + 0.1 * w1;
        let buf = 0.9 * 2.1 + d;
        let w2 = w1 - 0.5 * (d + 0.9 * buf);
        assert!(
            (w.double_value(&[0]) - w2).abs() < 1e-5,
            "{} vs {w2}",
            w.double_value(&[0])
        );
    }

    #[test]
    fn inactive_parameters_are_untouched_when_excluded() {
        let a = param(&[1.0]);
        let b = param(&[1.0]);
        let mut sgd = Sgd::new(
            vec![a.shallow_clone(), b.shallow_clone()],
            &optim(0.9, false, 0.5),
        );
        set_grad(&a, &[1.0]);
        set_grad(&b, &[1.0]);
        sgd.step(&[0, 1], 0, 0.1);
        let b_before = b.double_value(&[0]);
        sgd.zero_grad();
        set_grad(&a, &[1.0]);
        sgd.step(&[0], 0, 0.1);
        assert_eq!(
            b.double_value(&[0]),
            b_before,
            "weight decay or momentum moved an inactive weight"
        );
        let state = sgd.state();
        let b_buf = state.iter().find(|(_, i, _)| *i == 1).unwrap();
        assert!(
            (b_buf.2.double_value(&[0]) - 1.5).abs() < 1e-6,
            "momentum buffer changed"
        );
    }

    #[test]
    fn inactive_parameters_decay_when_included() {
        let a = param(&[1.0]);
        let b = param(&[1.0]);
        let mut config = optim(0.0, false, 0.5);
        config.inactive = InactiveRule::Include;
        let mut sgd = Sgd::new(vec![a.shallow_clone(), b.shallow_clone()], &config);
        set_grad(&a, &[1.0]);
        sgd.step(&[0], 0, 0.1);
        assert!((b.double_value(&[0]) - 0.95).abs() < 1e-6);
    }

    #[test]
    fn momentum_groups_keep_separate_buffers() {
        let w = param(&[0.0]);
        let mut sgd = Sgd::new(vec![w.shallow_clone()], &optim(0.5, false, 0.0));
        set_grad(&w, &[1.0]);
        sgd.step(&[0], 0, 1.0); // group 0 buf = 1, w = -1
        sgd.zero_grad();
        set_grad(&w, &[1.0]);
        sgd.step(&[0], 1, 1.0); // group 1 buf = 1 (fresh), w = -2
        let group0 = sgd.state().into_iter().find(|(g, _, _)| *g == 0).unwrap().2;
        assert!(
            (group0.double_value(&[0]) - 1.0).abs() < 1e-9,
            "group 1's step touched group 0's buffer"
        );
        sgd.zero_grad();
        set_grad(&w, &[1.0]);
        sgd.step(&[0], 0, 1.0); // group 0 buf = 0.5 + 1 = 1.5, w = -3.5
        assert!((w.double_value(&[0]) + 3.5).abs() < 1e-6);
        let state = sgd.state();
        assert_eq!(state.len(), 2);
        assert!((state[0].2.double_value(&[0]) - 1.5).abs() < 1e-6);
        assert!((state[1].2.double_value(&[0]) - 1.0).abs() < 1e-6);
        assert_eq!(sgd.updates(), 3);
    }

    #[test]
    fn clipping_by_norm_and_value() {
        let w = param(&[0.0, 0.0]);
        let mut config = optim(0.0, false, 0.0);
        config.clip = ClipKind::Norm;
        config.clip_value = 1.0;
        let mut sgd = Sgd::new(vec![w.shallow_clone()], &config);
        set_grad(&w, &[3.0, 4.0]);
        let norm = sgd.step(&[0], 0, 1.0);
        assert!((norm - 5.0).abs() < 1e-5);
        assert!((w.double_value(&[0]) + 0.6).abs() < 1e-4);
        config.clip = ClipKind::Value;
        let v = param(&[0.0, 0.0]);
        let mut sgd = Sgd::new(vec![v.shallow_clone()], &config);
        set_grad(&v, &[3.0, -0.5]);
        sgd.step(&[0], 0, 1.0);
        assert!((v.double_value(&[0]) + 1.0).abs() < 1e-6);
        assert!((v.double_value(&[1]) - 0.5).abs() < 1e-6);
    }

    #[test]
    fn schedules() {
        let mut config = OptimSection {
            lr: 1.0,
            min_lr: 0.0,
            ..OptimSection::default()
        };
        let cosine = LrSchedule::new(&config, 100);
        assert!((cosine.at(0) - 1.0).abs() < 1e-12);
        assert!((cosine.at(50) - 0.5).abs() < 1e-12);
        config.schedule = Schedule::Linear;
        config.warmup_steps = 10;
        config.warmup_start_lr = 0.0;
        let linear = LrSchedule::new(&config, 110);
        assert!((linear.at(5) - 0.5).abs() < 1e-12);
        assert!((linear.at(60) - 0.5).abs() < 1e-12);
    }
}
