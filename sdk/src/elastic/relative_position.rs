//! AutoFormer's 2-D relative position encoding.

use tch::{Device, Kind, Tensor};

use super::counter::Counter;
use crate::nn::{init::join, ParamStore};

/// AutoFormer's 2-D relative position encoding of one attention layer: for query token `i` and
/// key token `j` on a `side x side` patch grid, learned vectors (one per clipped row offset and
/// one per clipped column offset, summed; index 0 is reserved for pairs with the class token)
/// are added to the attention logits through the queries (`k` table) and to the output through
/// the attention weights (`v` table). Tables have `head_dim` features and are shared by all
/// heads, so they do not shrink with the head count.
pub struct RelativePosition2d {
    /// Key tables `(rows, cols)`, each `[2 * max_distance + 2, head_dim]`.
    pub key_tables: (Tensor, Tensor),
    /// Value tables `(rows, cols)`, each `[2 * max_distance + 2, head_dim]`.
    pub value_tables: (Tensor, Tensor),
    /// Offsets are clipped to `[-max_distance, max_distance]` (AutoFormer: 14).
    pub max_distance: i64,
    ids: Vec<usize>,
}

impl RelativePosition2d {
    /// Tables registered as `{prefix}.rel_pos_k.table_v|table_h` and
    /// `{prefix}.rel_pos_v.table_v|table_h` (`v` = vertical offsets, `h` = horizontal), drawn from
    /// a normal with std 0.02 as AutoFormer initialises them.
    pub fn new(store: &mut ParamStore, prefix: &str, head_dim: i64, max_distance: i64) -> Self {
        let rows = 2 * max_distance + 2;
        let mut ids = Vec::new();
        let mut table = |name: &str| {
            // AutoFormer's trunc_normal_(std=0.02) truncates at +-2 (absolute), 100 std away.
            let init =
                Tensor::empty([rows, head_dim], (Kind::Float, Device::Cpu)).normal_(0.0, 0.02);
            let (t, id) = store.param(&join(prefix, name), init);
            ids.push(id);
            t
        };
        let key_tables = (table("rel_pos_k.table_v"), table("rel_pos_k.table_h"));
        let value_tables = (table("rel_pos_v.table_v"), table("rel_pos_v.table_h"));
        RelativePosition2d {
            key_tables,
            value_tables,
            max_distance,
            ids,
        }
    }

    /// `[tokens, tokens]` table indices of the row and column offsets (class token first).
    fn indices(&self, tokens: i64, device: Device) -> (Tensor, Tensor) {
        let patches = tokens - 1;
        let side = (patches as f64).sqrt().round() as i64;
        assert_eq!(
            side * side,
            patches,
            "relative positions need a square patch grid"
        );
        let position = Tensor::arange(patches, (Kind::Int64, device));
        let (row, col) = (
            position.divide_scalar_mode(side, "floor"),
            position.remainder(side),
        );
        let offset = |p: &Tensor| {
            (p.unsqueeze(0) - p.unsqueeze(1)).clamp(-self.max_distance, self.max_distance)
                + (self.max_distance + 1)
        };
        // Index 0 marks pairs involving the class token.
        let pad = |m: Tensor| m.constant_pad_nd([1, 0, 1, 0]);
        (pad(offset(&row)), pad(offset(&col)))
    }

    fn embeddings(&self, tables: &(Tensor, Tensor), tokens: i64) -> Tensor {
        let (rows, cols) = self.indices(tokens, tables.0.device());
        // [t, t, head_dim]
        tables
            .0
            .index_select(0, &rows.flatten(0, 1))
            .view([tokens, tokens, -1])
            + tables
                .1
                .index_select(0, &cols.flatten(0, 1))
                .view([tokens, tokens, -1])
    }

    /// `q [n, h, t, d] -> [n, h, t, t]`: `sum_d q[i, d] * K[i, j, d]` (unscaled).
    pub fn key_term(&self, q: &Tensor, tokens: i64) -> Tensor {
        Tensor::einsum(
            "nhid,ijd->nhij",
            &[q, &self.embeddings(&self.key_tables, tokens)],
            None::<i64>,
        )
    }

    /// `attention [n, h, t, t] -> [n, h, t, d]`: `sum_j a[i, j] * V[i, j, d]`.
    pub fn value_term(&self, attention: &Tensor, tokens: i64) -> Tensor {
        Tensor::einsum(
            "nhij,ijd->nhid",
            &[attention, &self.embeddings(&self.value_tables, tokens)],
            None::<i64>,
        )
    }

    /// Adds the table parameters and the two extra products per head to `counter`.
    pub fn count(&self, counter: &mut Counter, heads: i64, tokens: i64) {
        let (rows, head_dim) = (self.key_tables.0.size()[0], self.key_tables.0.size()[1]);
        counter.parameters(4 * rows * head_dim);
        counter.multiply_accumulates(2 * heads * tokens * tokens * head_dim);
    }

    /// The tables, named as [`RelativePosition2d::new`] names them under `prefix`.
    pub fn export(&self, prefix: &str, _heads: i64) -> Vec<(String, Tensor)> {
        [
            ("rel_pos_k.table_v", &self.key_tables.0),
            ("rel_pos_k.table_h", &self.key_tables.1),
            ("rel_pos_v.table_v", &self.value_tables.0),
            ("rel_pos_v.table_h", &self.value_tables.1),
        ]
        .into_iter()
        .map(|(name, t)| (join(prefix, name), t.detach().contiguous().copy()))
        .collect()
    }

    /// Indices of this layer's parameters in its store.
    pub fn param_ids(&self) -> &[usize] {
        &self.ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{max_diff, randn};

    #[test]
    fn relative_positions_equal_a_direct_double_loop() {
        tch::manual_seed(5);
        let mut store = ParamStore::new(Device::Cpu);
        let relative = RelativePosition2d::new(&mut store, "attn", 4, 1);
        // A 3x3 patch grid plus the class token; offsets clip at 1.
        let tokens = 10;
        let q = randn(&[1, 2, tokens, 4]);
        let key_term = relative.key_term(&q, tokens);
        let index = |token: i64, other: i64, by_row: bool| -> i64 {
            if token == 0 || other == 0 {
                return 0;
            }
            let (a, b) = (token - 1, other - 1);
            let offset = if by_row { b / 3 - a / 3 } else { b % 3 - a % 3 };
            offset.clamp(-1, 1) + 2
        };
        for i in 0..tokens {
            for j in 0..tokens {
                let embedding = relative.key_tables.0.get(index(i, j, true))
                    + relative.key_tables.1.get(index(i, j, false));
                for h in 0..2 {
                    let expected = (q.get(0).get(h).get(i) * &embedding).sum(Kind::Float);
                    let got = key_term.get(0).get(h).get(i).get(j);
                    assert!(max_diff(&got, &expected) <= 1e-6);
                }
            }
        }
    }
}
