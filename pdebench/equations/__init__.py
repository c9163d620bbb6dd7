"""PDEs as equations, below the problems that sample them and the solvers that step them.

:mod:`.fourier` holds the periodic Fourier grid (wavenumbers, transforms, dealiasing);
:mod:`.spectral` the semi-linear evolution equations :math:`u_t = L u + N(u, t)` in Fourier space,
each stating only its linear symbol and nonlinear term; :mod:`.steady` the steady equations
(Poisson, stationary Allen–Cahn), each one residual that GP-HM, finite differences and NSM evaluate
on their own Laplacian. Problems build an equation from their parameters; the solvers step or solve it. Imports only :mod:`pdebench.fft` (the core layer).
"""
