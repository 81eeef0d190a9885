//! Multi-head self-attention with elastic embed dim and heads.

use tch::Tensor;

use super::{counter::Counter, linear::ElasticLinear, relative_position::RelativePosition2d};
use crate::nn::{
    init::{join, uniform_fan_in},
    slice::first,
    ParamStore,
};

/// Multi-head self-attention whose q/k/v width is `head_dim x heads` (AutoFormer: 64 per head,
/// so the head count varies independently of the embed dim), with elastic embed dim and heads.
///
/// Parameters follow timm's layout: `{prefix}.qkv.weight` `[3 * heads_max * head_dim, embed_max]`
/// (rows: all query heads, then keys, then values), `{prefix}.qkv.bias`, `{prefix}.proj.weight`
/// `[embed_max, heads_max * head_dim]`, `{prefix}.proj.bias`.
pub struct ElasticSelfAttention {
    /// `[3 * heads_max * head_dim, embed_max]`.
    pub qkv_weight: Tensor,
    /// `[3 * heads_max * head_dim]`, if biased.
    pub qkv_bias: Option<Tensor>,
    /// Heads -> embed dim.
    pub proj: ElasticLinear,
    /// Query/key/value width per head.
    pub head_dim: i64,
    /// Relative position encoding, if any.
    pub relative_position: Option<RelativePosition2d>,
    heads_max: i64,
    ids: Vec<usize>,
}

impl ElasticSelfAttention {
    /// Up to `heads_max` heads of `head_dim` over up to `embed_max` features.
    pub fn new(
        store: &mut ParamStore,
        prefix: &str,
        embed_max: i64,
        heads_max: i64,
        head_dim: i64,
        qkv_bias: bool,
    ) -> Self {
        let width = heads_max * head_dim;
        let (qkv_weight, wid) = store.param(
            &join(prefix, "qkv.weight"),
            uniform_fan_in(&[3 * width, embed_max], embed_max),
        );
        let mut ids = vec![wid];
        let qkv_bias = qkv_bias.then(|| {
            let (b, id) = store.param(
                &join(prefix, "qkv.bias"),
                uniform_fan_in(&[3 * width], embed_max),
            );
            ids.push(id);
            b
        });
        let proj = ElasticLinear::new(store, &join(prefix, "proj"), width, embed_max, true);
        ids.extend_from_slice(proj.param_ids());
        ElasticSelfAttention {
            qkv_weight,
            qkv_bias,
            proj,
            head_dim,
            relative_position: None,
            heads_max,
            ids,
        }
    }

    /// Adds a relative position encoding (registered as `{prefix}.rel_pos_k|rel_pos_v.*`).
    pub fn with_relative_position(mut self, relative_position: RelativePosition2d) -> Self {
        self.ids.extend(relative_position.param_ids());
        self.relative_position = Some(relative_position);
        self
    }

    /// The largest head count.
    pub fn heads_max(&self) -> i64 {
        self.heads_max
    }

    /// Rows of the q, k and v blocks for `heads` heads.
    fn qkv_rows(&self, tensor: &Tensor, heads: i64) -> Tensor {
        if heads == self.heads_max {
            return tensor.shallow_clone();
        }
        let (full, active) = (self.heads_max * self.head_dim, heads * self.head_dim);
        Tensor::cat(
            &[
                tensor.narrow(0, 0, active),
                tensor.narrow(0, full, active),
                tensor.narrow(0, 2 * full, active),
            ],
            0,
        )
    }

    /// The active qkv weight `[3 * heads * head_dim, embed]` and bias.
    pub fn active_qkv(&self, embed: i64, heads: i64) -> (Tensor, Option<Tensor>) {
        (
            self.qkv_rows(&first(&self.qkv_weight, 1, embed), heads),
            self.qkv_bias.as_ref().map(|b| self.qkv_rows(b, heads)),
        )
    }

    /// `[n, tokens, embed] -> [n, tokens, embed]` with `heads` heads; `head_gate` multiplies each
    /// head's output. With a relative position encoding, tokens are the class token followed by
    /// a square grid of patches.
    pub fn forward(&self, x: &Tensor, heads: i64, head_gate: Option<&Tensor>) -> Tensor {
        let size = x.size();
        let (tokens, embed) = (size[1], size[2]);
        let (weight, bias) = self.active_qkv(embed, heads);
        // [n, t, 3 * h * d] -> [3, n, h, t, d]. The batch stays -1 so a traced module accepts
        // any batch size.
        let qkv = x
            .linear(&weight, bias.as_ref())
            .view([-1, tokens, 3, heads, self.head_dim])
            .permute([2, 0, 3, 1, 4]);
        let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        // [n, h, t, d]
        let out = match &self.relative_position {
            None => Tensor::scaled_dot_product_attention(
                &q,
                &k,
                &v,
                None::<Tensor>,
                0.0,
                false,
                scale,
                false,
            ),
            Some(relative) => {
                // [n, h, t, t]
                let logits =
                    q.matmul(&k.transpose(-2, -1)) * scale + relative.key_term(&q, tokens) * scale;
                let attention = logits.softmax(-1, q.kind());
                attention.matmul(&v) + relative.value_term(&attention, tokens)
            }
        };
        let out = match head_gate {
            Some(gate) => out * first(gate, 0, heads).view([1, heads, 1, 1]),
            None => out,
        };
        let out = out
            .transpose(1, 2)
            .reshape([-1, tokens, heads * self.head_dim]);
        self.proj.forward(&out, embed, None)
    }

    /// Adds qkv, the two attention products and the projection, for `tokens` tokens.
    pub fn count(&self, counter: &mut Counter, embed: i64, heads: i64, tokens: i64) {
        let width = heads * self.head_dim;
        counter.linear(embed, 3 * width, tokens, self.qkv_bias.is_some());
        // q k^T and attention x v.
        counter.multiply_accumulates(2 * tokens * tokens * width);
        self.proj.count(counter, width, embed, tokens);
        if let Some(relative) = &self.relative_position {
            relative.count(counter, heads, tokens);
        }
    }

    /// The plain tensors at the given sizes, named as [`ElasticSelfAttention::new`] names them.
    pub fn export(&self, prefix: &str, embed: i64, heads: i64) -> Vec<(String, Tensor)> {
        let (weight, bias) = self.active_qkv(embed, heads);
        let mut out = vec![(
            join(prefix, "qkv.weight"),
            weight.detach().contiguous().copy(),
        )];
        if let Some(bias) = bias {
            out.push((join(prefix, "qkv.bias"), bias.detach().contiguous().copy()));
        }
        out.extend(
            self.proj
                .export(&join(prefix, "proj"), heads * self.head_dim, embed),
        );
        if let Some(relative) = &self.relative_position {
            out.extend(relative.export(prefix, heads));
        }
        out
    }

    /// Indices of this layer's parameters in its store.
    pub fn param_ids(&self) -> &[usize] {
        &self.ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{copy, max_diff, randn};
    use tch::{Device, Kind};

    /// Plain multi-head attention from explicit q/k/v/proj weights, written out step by step.
    #[allow(clippy::too_many_arguments)]
    fn plain_attention(
        x: &Tensor,
        wq: &Tensor,
        wk: &Tensor,
        wv: &Tensor,
        bq: &Tensor,
        bk: &Tensor,
        bv: &Tensor,
        wp: &Tensor,
        bp: &Tensor,
        heads: i64,
        head_dim: i64,
    ) -> Tensor {
        let (n, t) = (x.size()[0], x.size()[1]);
        let split = |w: &Tensor, b: &Tensor| {
            x.linear(w, Some(b))
                .view([n, t, heads, head_dim])
                .transpose(1, 2)
        };
        let (q, k, v) = (split(wq, bq), split(wk, bk), split(wv, bv));
        let attention =
            (q.matmul(&k.transpose(-2, -1)) / (head_dim as f64).sqrt()).softmax(-1, Kind::Float);
        attention
            .matmul(&v)
            .transpose(1, 2)
            .reshape([n, t, heads * head_dim])
            .linear(wp, Some(bp))
    }

    #[test]
    fn attention_equals_plain_attention_at_full_and_sliced_sizes() {
        tch::manual_seed(4);
        let mut store = ParamStore::new(Device::Cpu);
        let (embed_max, heads_max, head_dim) = (12, 3, 4);
        let attention =
            ElasticSelfAttention::new(&mut store, "attn", embed_max, heads_max, head_dim, true);
        let x = randn(&[2, 5, embed_max]);
        for (embed, heads) in [(12, 3), (9, 2), (12, 1)] {
            let xs = x.narrow(2, 0, embed);
            let got = attention.forward(&xs, heads, None);
            let width = heads_max * head_dim;
            let block = |part: i64| {
                (
                    copy(
                        &attention
                            .qkv_weight
                            .narrow(0, part * width, heads * head_dim)
                            .narrow(1, 0, embed),
                    ),
                    copy(&attention.qkv_bias.as_ref().unwrap().narrow(
                        0,
                        part * width,
                        heads * head_dim,
                    )),
                )
            };
            let ((wq, bq), (wk, bk), (wv, bv)) = (block(0), block(1), block(2));
            let wp = copy(&attention.proj.weight.narrow(0, 0, embed).narrow(
                1,
                0,
                heads * head_dim,
            ));
            let bp = copy(&attention.proj.bias.as_ref().unwrap().narrow(0, 0, embed));
            let plain =
                plain_attention(&xs, &wq, &wk, &wv, &bq, &bk, &bv, &wp, &bp, heads, head_dim);
            assert!(
                max_diff(&got, &plain) <= 1e-6,
                "embed {embed} heads {heads}"
            );
            // The exported qkv weight is timm's fused layout of the same blocks.
            let exported = attention.export("attn", embed, heads);
            let fused = Tensor::cat(&[wq, wk, wv], 0);
            assert_eq!(exported[0].0, "attn.qkv.weight");
            assert_eq!(max_diff(&exported[0].1, &fused), 0.0);
        }
    }
}
