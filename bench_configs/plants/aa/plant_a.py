# a planted cell with 20 recurrent products a step (../plantlib.py; targets_aa.toml)
from plantlib import plant_cell

Plant = plant_cell(products=20)
