"""Scenario regression tests: ground truth, model predictions, scenario slices, metrics and the CI gate.

Library code only (no FastAPI, no torch): the CLI (`edgemine annotations|predictions|scenario|
evaluate|gate`) and the service (`/v1/scenarios`, `/v1/evaluations`, `/v1/models`) wrap it.
Layering: models <- bundle <- search <- scenarios <- {service, cli}. A scenario whose members come
from a mining query gets them through an injected `Resolver`, so this package never imports the
service.
"""
