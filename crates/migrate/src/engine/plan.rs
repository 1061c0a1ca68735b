//! The plan: which migrations a run applies or reverts, and their offline rendering.

use super::*;

pub(super) struct PlanStep {
    pub(super) index: usize,
    pub(super) from: Option<usize>,
    pub(super) to: Option<usize>,
}

impl Migrator {
    /// Whether a run of `plan` prepares the bookkeeping statements: when it has a transactional
    /// step (a plan of only non-transactional steps, or an empty one, skips the round trip).
    pub(super) fn wants_prepared(&self, plan: &[PlanStep]) -> bool {
        plan.iter()
            .any(|s| self.set.migrations()[s.index].is_transactional())
    }

    pub(super) fn id_at(&self, pos: Option<usize>) -> Option<&str> {
        pos.map(|i| self.set.migrations()[i].id())
    }

    pub(super) fn plan(
        &self,
        current: Option<usize>,
        target: &Target,
        direction: Direction,
    ) -> Result<Vec<PlanStep>, Error> {
        let goal = self.set.resolve(target, current)?;
        let here = current.map_or(0, |c| c + 1);
        let there = goal.map_or(0, |g| g + 1);
        let mut steps = Vec::new();
        match direction {
            Direction::Up => {
                if there < here {
                    return Err(Error::UnknownTarget {
                        target: target.to_string(),
                        reason: format!(
                            "it is below the current revision {}: use downgrade",
                            self.id_at(current).unwrap_or("base")
                        ),
                    });
                }
                for i in here..there {
                    steps.push(PlanStep {
                        index: i,
                        from: i.checked_sub(1),
                        to: Some(i),
                    });
                }
            }
            Direction::Down => {
                if !self.set.downs_read() {
                    return Err(Error::DownsNotRead);
                }
                if there > here {
                    return Err(Error::UnknownTarget {
                        target: target.to_string(),
                        reason: format!(
                            "it is above the current revision {}: use upgrade",
                            self.id_at(current).unwrap_or("base")
                        ),
                    });
                }
                for i in (there..here).rev() {
                    let m = &self.set.migrations()[i];
                    if m.down_statements().is_none() {
                        return Err(Error::NoDown {
                            id: m.id().to_owned(),
                        });
                    }
                    steps.push(PlanStep {
                        index: i,
                        from: Some(i),
                        to: i.checked_sub(1),
                    });
                }
            }
        }
        Ok(steps)
    }
}
