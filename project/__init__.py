"""The ground floor every package stands on: the catalogue of topics (``project.catalogue``: the syllabus, what
each topic trains and checks) and the description of the machine a run or a measurement was made on
(``project.environment``). It imports no other package of the project, and every package may import it."""
