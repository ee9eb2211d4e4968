"""Learning textures: the patch-OT loss, the generator, synthesis (Alg. 1) and training (Alg. 2)."""
