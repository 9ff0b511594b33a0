//! Exact Shapley contributions of forust-ml trees (the TreeSHAP algorithm of Lundberg, Erion
//! and Lee, "Consistent Individualized Feature Attribution for Tree Ensembles", Algorithm 2).
//!
//! forust-ml 0.8 computes the same values, but its walk allocates two vectors at every node
//! it visits and recomputes each tree's mean leaf value for every row. Here the paths of all
//! recursion levels share one buffer per call, and the tree means are computed once per
//! call. The arithmetic keeps forust-ml's order and its `f32` steps, so the contributions
//! and the reasons built from them do not change. A test compares the two on every value.

use forust_ml::tree::Tree;

/// One feature on the path from the root to the current node.
#[derive(Clone, Copy, Default)]
struct Step {
    feature: usize,
    /// Share of the training weight that reaches the node without this feature's split.
    zero_fraction: f32,
    /// 1 when the row follows this feature's split, 0 when it does not.
    one_fraction: f32,
    /// Permutation weight of the subsets of this size.
    weight: f32,
}

/// The state the walks of one ensemble share: each tree's expected output and a path buffer
/// long enough for the deepest tree. It is built once per batch of rows.
pub(crate) struct Explainer<'a> {
    trees: &'a [Tree],
    /// Mean leaf value of each tree, weighted by the training hessian that reached each
    /// leaf: the tree's expected output, which is its part of the bias.
    means: Vec<f64>,
    buffer: Vec<Step>,
    missing: f64,
}

impl<'a> Explainer<'a> {
    pub(crate) fn new(trees: &'a [Tree], missing: f64) -> Explainer<'a> {
        let means = trees
            .iter()
            .map(|tree| {
                if tree.nodes.is_empty() {
                    0.0
                } else {
                    tree.get_average_leaf_weights(0)
                }
            })
            .collect();
        let deepest = trees.iter().map(tree_depth).max().unwrap_or(0);
        // Each level keeps its own copy of a path at most one step longer than its depth.
        let levels = deepest + 2;
        Explainer {
            trees,
            means,
            buffer: vec![Step::default(); levels * (levels + 1) / 2 + 1],
            missing,
        }
    }

    /// Adds the contributions of `row` to `out`: one value per feature, then the bias in the
    /// last of its `row.len() + 1` slots. `out` starts with the model's base score as bias.
    pub(crate) fn add_row(&mut self, row: &[f64], out: &mut [f64]) {
        let bias = out.len() - 1;
        for (tree, mean) in self.trees.iter().zip(&self.means) {
            out[bias] += mean;
            if tree.nodes.is_empty() {
                continue;
            }
            let walk = Walk {
                tree,
                row,
                missing: self.missing,
            };
            // The root has no parent split, so its step names a feature index no row has.
            walk.visit(0, &mut self.buffer, 0, 1.0, 1.0, row.len() + 100, out);
        }
    }
}

/// Returns the number of edges on the longest root-to-leaf path, counted by walking the
/// children rather than trusting the stored depth fields.
fn tree_depth(tree: &Tree) -> usize {
    let mut deepest = 0;
    let mut pending = vec![(0usize, 0usize)];
    while let Some((index, depth)) = pending.pop() {
        let Some(node) = tree.nodes.get(index) else {
            continue;
        };
        deepest = deepest.max(depth);
        // A malformed tree must not make this loop forever.
        if node.is_leaf || depth > tree.nodes.len() {
            continue;
        }
        pending.push((node.left_child, depth + 1));
        pending.push((node.right_child, depth + 1));
        if node.has_missing_branch() {
            pending.push((node.missing_node, depth + 1));
        }
    }
    deepest
}

struct Walk<'a> {
    tree: &'a Tree,
    row: &'a [f64],
    missing: f64,
}

impl Walk<'_> {
    /// Visits `node`. `buffer[..depth]` contains the parent's path and this level's path is
    /// built in `buffer[depth..]`, so the children's copies land after it without allocating.
    #[allow(clippy::too_many_arguments)]
    fn visit(
        &self,
        node_index: usize,
        buffer: &mut [Step],
        depth: usize,
        parent_zero: f32,
        parent_one: f32,
        parent_feature: usize,
        out: &mut [f64],
    ) {
        let (parent, path) = buffer.split_at_mut(depth);
        path[..depth].copy_from_slice(parent);
        let mut depth = depth;
        extend(path, depth, parent_zero, parent_one, parent_feature);
        let node = &self.tree.nodes[node_index];
        if node.is_leaf {
            for i in 1..=depth {
                let share = unwound_sum(path, depth, i);
                let step = path[i];
                out[step.feature] +=
                    f64::from(share * (step.one_fraction - step.zero_fraction) * node.weight_value);
            }
            return;
        }
        let followed = node.get_child_idx(&self.row[node.split_feature], &self.missing);
        let mut incoming_zero = 1.0;
        let mut incoming_one = 1.0;
        // A feature split on again lower down is one player: undo its earlier step.
        if let Some(seen) = (0..=depth).find(|&i| path[i].feature == node.split_feature) {
            incoming_zero = path[seen].zero_fraction;
            incoming_one = path[seen].one_fraction;
            unwind(path, depth, seen);
            depth -= 1;
        }
        let others: [usize; 2] = if followed == node.left_child {
            [node.right_child, node.missing_node]
        } else if followed == node.right_child {
            [node.left_child, node.missing_node]
        } else {
            [node.left_child, node.right_child]
        };
        let count = if node.has_missing_branch() { 2 } else { 1 };
        for (rank, child) in std::iter::once(followed)
            .chain(others.into_iter().take(count))
            .enumerate()
        {
            let zero = (self.tree.nodes[child].hessian_sum / node.hessian_sum) * incoming_zero;
            let one = if rank == 0 { incoming_one } else { 0.0 };
            self.visit(child, path, depth + 1, zero, one, node.split_feature, out);
        }
    }
}

/// Appends a step for `feature` at `depth` and updates the subset weights.
fn extend(path: &mut [Step], depth: usize, zero: f32, one: f32, feature: usize) {
    path[depth] = Step {
        feature,
        zero_fraction: zero,
        one_fraction: one,
        weight: if depth == 0 { 1.0 } else { 0.0 },
    };
    for i in (0..depth).rev() {
        path[i + 1].weight += (one * path[i].weight * (i + 1) as f32) / (depth + 1) as f32;
        path[i].weight = (zero * path[i].weight * (depth - i) as f32) / (depth + 1) as f32;
    }
}

/// Removes the step at `index`, undoing what [`extend`] did for it.
fn unwind(path: &mut [Step], depth: usize, index: usize) {
    let one = path[index].one_fraction;
    let zero = path[index].zero_fraction;
    let mut next_one = path[depth].weight;
    for i in (0..depth).rev() {
        if one != 0.0 {
            let previous = path[i].weight;
            path[i].weight = (next_one * (depth + 1) as f32) / ((i + 1) as f32 * one);
            next_one = previous - (path[i].weight * zero * (depth - i) as f32) / (depth + 1) as f32;
        } else {
            path[i].weight = (path[i].weight * (depth + 1) as f32) / (zero * (depth - i) as f32);
        }
    }
    for i in index..depth {
        path[i].feature = path[i + 1].feature;
        path[i].zero_fraction = path[i + 1].zero_fraction;
        path[i].one_fraction = path[i + 1].one_fraction;
    }
}

/// Returns the total weight the path would have with the step at `index` removed.
fn unwound_sum(path: &[Step], depth: usize, index: usize) -> f32 {
    let one = path[index].one_fraction;
    let zero = path[index].zero_fraction;
    let mut next_one = path[depth].weight;
    let mut total = 0.0;
    for i in (0..depth).rev() {
        if one != 0.0 {
            let part = (next_one * (depth + 1) as f32) / ((i + 1) as f32 * one);
            total += part;
            next_one = path[i].weight - part * zero * ((depth - i) as f32 / (depth + 1) as f32);
        } else if zero != 0.0 {
            total += (path[i].weight / zero) / ((depth - i) as f32 / (depth + 1) as f32);
        }
    }
    total
}
