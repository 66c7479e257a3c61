"""Storage: repository interfaces (`interfaces`), value types (`types`), one error tree
(`errors`), and implementations in subpackages (`sqlite`). Outside an implementation nothing
speaks SQL or imports an engine."""
