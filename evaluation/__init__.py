"""Evaluation: `vsr eval` (PSNR-Y, SSIM-Y, E_warp, speed) and the MATLAB-compatible bicubic resize.

matlab_resize (imresize, the BI degradation), metrics (Y-channel PSNR/SSIM), warping (E_warp on GT flow),
sequences (GT/LR folders and videos), runner (methods in lockstep over a clip), report (json, md, crops).
Importing the package imports none of them.
"""
