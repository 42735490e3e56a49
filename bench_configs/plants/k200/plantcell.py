# the planted cell with 200 recurrent products a step (../plantlib.py)
from plantlib import plant_cell

Plant = plant_cell(products=200)
