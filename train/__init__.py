"""Learning textures: the patch-OT loss, the generator, synthesis (Alg. 1) and training (Alg. 2)."""

from tilegen.threads import prepare_openmp

prepare_openmp()  # before anything below imports torch (and with it OpenMP)
