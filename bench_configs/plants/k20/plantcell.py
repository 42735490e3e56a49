# the planted cell with 20 recurrent products a step (../plantlib.py)
from plantlib import plant_cell

Plant = plant_cell(products=20)
