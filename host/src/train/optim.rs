//! SGD or AdamW over shared supernet weights with momentum groups, the inactive-parameter rule,
//! gradient clipping, and the learning-rate schedule.
//!
//! SGD is PyTorch's `torch.optim.SGD` (dampening 0): `d = g + wd * w`; the momentum buffer is `d`
//! on its first use and `m * buf + d` after; the step is `buf` (or `d + m * buf` with Nesterov);
//! `w -= lr * step`. AdamW is PyTorch's `torch.optim.AdamW`: `w *= 1 - lr * wd`; `m = b1 m +
//! (1 - b1) g`; `v = b2 v + (1 - b2) g^2`; `w -= lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) +
//! eps)`, with `t` counting the updates of that parameter in that group. A momentum group is a
//! full set of optimizer state over the same weights (DYNAS momentum separation); a step uses and
//! updates only its group's state.

use std::collections::BTreeMap;

use tch::{Kind, Tensor};

use crate::config::{ClipKind, InactiveRule, OptimSection, OptimizerKind, Schedule};
use crate::run::checkpoint::StateSlot;

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

/// One parameter's state in one group.
struct ParamState {
    momentum: Tensor,
    second_moment: Option<Tensor>,
    steps: i64,
}

/// SGD or AdamW with momentum groups over a fixed list of parameters.
pub struct Optimizer {
    params: Vec<Tensor>,
    kind: OptimizerKind,
    momentum: f64,
    nesterov: bool,
    betas: [f64; 2],
    eps: f64,
    weight_decay: f64,
    inactive: InactiveRule,
    clip: ClipKind,
    clip_value: f64,
    /// `groups[g][i]`: state of parameter `i` in group `g` (None until first used).
    groups: BTreeMap<u32, Vec<Option<ParamState>>>,
    updates: u64,
}

impl Optimizer {
    /// An optimizer over `params` (shallow handles of the supernet's parameters).
    pub fn new(params: Vec<Tensor>, optim: &OptimSection) -> Self {
        Optimizer {
            params,
            kind: optim.optimizer,
            momentum: optim.momentum,
            nesterov: optim.nesterov,
            betas: optim.betas,
            eps: optim.eps,
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
    pub fn updated(&self, active: &[usize]) -> Vec<usize> {
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
        let states = self
            .groups
            .entry(group)
            .or_insert_with(|| (0..self.params.len()).map(|_| None).collect());
        tch::no_grad(|| {
            for &i in &indices {
                let param = &self.params[i];
                let grad = param.grad();
                let grad = if grad.defined() {
                    grad.shallow_clone()
                } else {
                    param.zeros_like()
                };
                match self.kind {
                    OptimizerKind::Sgd => {
                        let update = sgd_direction(
                            &grad,
                            param,
                            &mut states[i],
                            self.momentum,
                            self.nesterov,
                            self.weight_decay,
                        );
                        let _ = param.shallow_clone().g_add_(&(update * -lr));
                    }
                    OptimizerKind::Adamw => adamw_update(
                        &grad,
                        param,
                        &mut states[i],
                        lr,
                        self.betas,
                        self.eps,
                        self.weight_decay,
                    ),
                }
            }
        });
        self.updates += 1;
        grad_norm
    }

    /// Optimizer state for a checkpoint: `(slot, group, parameter index, tensor)`.
    pub fn state(&self) -> Vec<(StateSlot, u32, usize, Tensor)> {
        let mut state = Vec::new();
        for (&group, states) in &self.groups {
            for (i, param_state) in states.iter().enumerate() {
                let Some(param_state) = param_state else {
                    continue;
                };
                state.push((
                    StateSlot::Momentum,
                    group,
                    i,
                    param_state.momentum.shallow_clone(),
                ));
                if let Some(second) = &param_state.second_moment {
                    state.push((StateSlot::SecondMoment, group, i, second.shallow_clone()));
                    state.push((StateSlot::Steps, group, i, Tensor::from(param_state.steps)));
                }
            }
        }
        state
    }

    /// Groups that exist (have been used), including those without any state yet.
    pub fn group_ids(&self) -> Vec<u32> {
        self.groups.keys().copied().collect()
    }

    /// Restores [`Optimizer::state`] (and the list of existing groups).
    pub fn load_state(
        &mut self,
        groups: &[u32],
        state: Vec<(StateSlot, u32, usize, Tensor)>,
    ) -> anyhow::Result<()> {
        self.groups.clear();
        for &group in groups {
            self.groups
                .insert(group, (0..self.params.len()).map(|_| None).collect());
        }
        // Momentum first, so second moments and step counts find their parameter's state.
        let mut state = state;
        state.sort_by_key(|(slot, group, index, _)| (*slot != StateSlot::Momentum, *group, *index));
        for (slot, group, index, tensor) in state {
            let states = self.groups.get_mut(&group).ok_or_else(|| {
                anyhow::anyhow!("checkpoint has optimizer state for unknown group {group}")
            })?;
            let param = self.params.get(index).ok_or_else(|| {
                anyhow::anyhow!(
                    "checkpoint has optimizer state for parameter {index}, the supernet has {}",
                    states.len()
                )
            })?;
            if slot != StateSlot::Steps && param.size() != tensor.size() {
                anyhow::bail!(
                    "checkpoint {} {group}/{index} has shape {:?}, parameter has {:?}",
                    slot.prefix(),
                    tensor.size(),
                    param.size()
                );
            }
            // A copy: the optimizer updates its state in place, and the caller may still hold it.
            let tensor = tensor.to_device(param.device()).copy();
            match slot {
                StateSlot::Momentum => {
                    states[index] = Some(ParamState {
                        momentum: tensor.to_kind(Kind::Float),
                        second_moment: None,
                        steps: 0,
                    })
                }
                StateSlot::SecondMoment | StateSlot::Steps => {
                    let param_state = states[index].as_mut().ok_or_else(|| {
                        anyhow::anyhow!(
                            "checkpoint has a {} for {group}/{index} without its first moment",
                            slot.prefix()
                        )
                    })?;
                    if slot == StateSlot::Steps {
                        param_state.steps = tensor.int64_value(&[]);
                    } else {
                        param_state.second_moment = Some(tensor.to_kind(Kind::Float));
                    }
                }
            }
        }
        Ok(())
    }
}

/// SGD's update direction for one parameter (updates its momentum buffer).
fn sgd_direction(
    grad: &Tensor,
    param: &Tensor,
    state: &mut Option<ParamState>,
    momentum: f64,
    nesterov: bool,
    weight_decay: f64,
) -> Tensor {
    let mut direction = grad.shallow_clone();
    if weight_decay != 0.0 {
        direction = &direction + param * weight_decay;
    }
    if momentum == 0.0 {
        return direction;
    }
    let buffer = match state {
        None => direction.detach().copy(),
        Some(state) => {
            let mut buffer = state.momentum.shallow_clone();
            let _ = buffer.g_mul_scalar_(momentum).g_add_(&direction);
            buffer
        }
    };
    let update = if nesterov {
        &direction + &buffer * momentum
    } else {
        buffer.shallow_clone()
    };
    *state = Some(ParamState {
        momentum: buffer,
        second_moment: None,
        steps: 0,
    });
    update
}

/// AdamW's in-place update of one parameter (and its moments).
fn adamw_update(
    grad: &Tensor,
    param: &Tensor,
    state: &mut Option<ParamState>,
    lr: f64,
    [beta1, beta2]: [f64; 2],
    eps: f64,
    weight_decay: f64,
) {
    let state = state.get_or_insert_with(|| ParamState {
        momentum: param.zeros_like(),
        second_moment: Some(param.zeros_like()),
        steps: 0,
    });
    state.steps += 1;
    let mut weights = param.shallow_clone();
    if weight_decay != 0.0 {
        let _ = weights.g_mul_scalar_(1.0 - lr * weight_decay);
    }
    let mut first = state.momentum.shallow_clone();
    let _ = first.g_mul_scalar_(beta1).g_add_(&(grad * (1.0 - beta1)));
    let mut second = state
        .second_moment
        .get_or_insert_with(|| param.zeros_like())
        .shallow_clone();
    let _ = second
        .g_mul_scalar_(beta2)
        .g_add_(&(grad * grad * (1.0 - beta2)));
    let t = state.steps as i32;
    let (correction1, correction2) = (1.0 - beta1.powi(t), 1.0 - beta2.powi(t));
    let denominator = second.sqrt() / correction2.sqrt() + eps;
    let _ = weights.g_add_(&(&first / denominator * (-lr / correction1)));
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
        let mut sgd = Optimizer::new(vec![w.shallow_clone()], &optim(0.9, true, 0.1));
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
        let mut sgd = Optimizer::new(
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
        let b_buf = state.iter().find(|(_, _, i, _)| *i == 1).unwrap();
        assert!(
            (b_buf.3.double_value(&[0]) - 1.5).abs() < 1e-6,
            "momentum buffer changed"
        );
    }

    #[test]
    fn inactive_parameters_decay_when_included() {
        let a = param(&[1.0]);
        let b = param(&[1.0]);
        let mut config = optim(0.0, false, 0.5);
        config.inactive = InactiveRule::Include;
        let mut sgd = Optimizer::new(vec![a.shallow_clone(), b.shallow_clone()], &config);
        set_grad(&a, &[1.0]);
        sgd.step(&[0], 0, 0.1);
        assert!((b.double_value(&[0]) - 0.95).abs() < 1e-6);
    }

    #[test]
    fn momentum_groups_keep_separate_buffers() {
        let w = param(&[0.0]);
        let mut sgd = Optimizer::new(vec![w.shallow_clone()], &optim(0.5, false, 0.0));
        set_grad(&w, &[1.0]);
        sgd.step(&[0], 0, 1.0); // group 0 buf = 1, w = -1
        sgd.zero_grad();
        set_grad(&w, &[1.0]);
        sgd.step(&[0], 1, 1.0); // group 1 buf = 1 (fresh), w = -2
        let group0 = sgd
            .state()
            .into_iter()
            .find(|(_, g, _, _)| *g == 0)
            .unwrap()
            .3;
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
        assert!((state[0].3.double_value(&[0]) - 1.5).abs() < 1e-6);
        assert!((state[1].3.double_value(&[0]) - 1.0).abs() < 1e-6);
        assert_eq!(sgd.updates(), 3);
    }

    #[test]
    fn clipping_by_norm_and_value() {
        let w = param(&[0.0, 0.0]);
        let mut config = optim(0.0, false, 0.0);
        config.clip = ClipKind::Norm;
        config.clip_value = 1.0;
        let mut sgd = Optimizer::new(vec![w.shallow_clone()], &config);
        set_grad(&w, &[3.0, 4.0]);
        let norm = sgd.step(&[0], 0, 1.0);
        assert!((norm - 5.0).abs() < 1e-5);
        assert!((w.double_value(&[0]) + 0.6).abs() < 1e-4);
        config.clip = ClipKind::Value;
        let v = param(&[0.0, 0.0]);
        let mut sgd = Optimizer::new(vec![v.shallow_clone()], &config);
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

    fn adamw(weight_decay: f64) -> OptimSection {
        OptimSection {
            optimizer: OptimizerKind::Adamw,
            weight_decay,
            ..OptimSection::default()
        }
    }

    #[test]
    fn adamw_matches_pytorchs_update_rule() {
        // torch.optim.AdamW(lr=0.1, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05) on w = 1.0
        // with gradients 2.0 then -1.0, computed by hand from PyTorch's documented algorithm.
        let w = param(&[1.0]);
        let mut adam = Optimizer::new(vec![w.shallow_clone()], &adamw(0.05));
        let (lr, b1, b2, eps, wd) = (0.1f64, 0.9f64, 0.999f64, 1e-8f64, 0.05f64);
        let mut expected = 1.0f64;
        let (mut m, mut v) = (0.0f64, 0.0f64);
        for (t, g) in [(1, 2.0f64), (2, -1.0)] {
            adam.zero_grad();
            set_grad(&w, &[g as f32]);
            adam.step(&[0], 0, lr);
            expected *= 1.0 - lr * wd;
            m = b1 * m + (1.0 - b1) * g;
            v = b2 * v + (1.0 - b2) * g * g;
            let (c1, c2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
            expected -= lr / c1 * m / ((v / c2).sqrt() + eps);
            assert!(
                (w.double_value(&[0]) - expected).abs() < 1e-6,
                "step {t}: {} vs {expected}",
                w.double_value(&[0])
            );
        }
    }

    #[test]
    fn adamw_state_round_trips_with_per_parameter_step_counts() {
        let a = param(&[1.0, 2.0]);
        let b = param(&[3.0]);
        let mut adam = Optimizer::new(vec![a.shallow_clone(), b.shallow_clone()], &adamw(0.0));
        set_grad(&a, &[1.0, 1.0]);
        set_grad(&b, &[1.0]);
        adam.step(&[0, 1], 0, 0.01);
        adam.zero_grad();
        set_grad(&a, &[0.5, -0.5]);
        adam.step(&[0], 0, 0.01);
        let state = adam.state();
        let steps = |index: usize| {
            state
                .iter()
                .find(|(slot, _, i, _)| *slot == StateSlot::Steps && *i == index)
                .map(|(_, _, _, t)| t.int64_value(&[]))
                .unwrap()
        };
        assert_eq!((steps(0), steps(1)), (2, 1));
        // A fresh optimizer restored from the state takes the same next step.
        let (a2, b2) = (param(&[0.0, 0.0]), param(&[0.0]));
        tch::no_grad(|| {
            a2.shallow_clone().copy_(&a);
            b2.shallow_clone().copy_(&b);
        });
        let mut restored =
            Optimizer::new(vec![a2.shallow_clone(), b2.shallow_clone()], &adamw(0.0));
        restored
            .load_state(&adam.group_ids(), adam.state())
            .unwrap();
        for (opt, p) in [(&mut adam, &a), (&mut restored, &a2)] {
            opt.zero_grad();
            set_grad(p, &[0.25, 0.75]);
            opt.step(&[0], 0, 0.01);
        }
        let diff = (&a - &a2).abs().max().double_value(&[]);
        assert_eq!(diff, 0.0);
    }
}
