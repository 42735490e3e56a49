# a planted cell with 21 recurrent products a step (../plantlib.py; targets_aa.toml)
from plantlib import plant_cell

Plant = plant_cell(products=21)
