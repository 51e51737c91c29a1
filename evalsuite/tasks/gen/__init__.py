"""Deterministic generators for the synthetic tasks, one module per kind of media.

Each generator is a pure function of ``(seed, difficulty, ...)`` that lays out a sample's media and
questions without drawing them, so cached media never have to be redrawn. For the image tasks:
``canvas`` records drawing operations and renders them on demand; ``doc`` lays out documents for
``docqa``; ``gui`` lays out screenshots for ``gui``; ``cache`` holds what those two tasks share
(argument checks, the cached PNG of each seed).
"""
