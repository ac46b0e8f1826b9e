"""The rollouts for eyes: the HTML report of one rollout (:mod:`~meshctl.web.report`) and
the live dashboard (:mod:`~meshctl.web.dashboard`), both drawing
:class:`meshctl.domain.timeline.Timeline` with uPlot.

uPlot is fetched at install time from its package registry into ``assets/vendor/`` (see
``hack/fetch-uplot.sh``; git ignores that folder) and served from the package: a page never
loads anything from the network. May: read rollouts through ``meshctl.ops`` and record the
same intents the CLI records. May not: show a Secret or what a kubeconfig holds.
"""
